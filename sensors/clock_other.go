//go:build !linux

package sensors

import "time"

const bootIDPath = ""

var processStart = time.Now()

// On non-Linux (development only) there is no boot clock: the offset is
// since process start and the clock is assumed synced.
func bootMono() int64 { return int64(time.Since(processStart)) }

// KernelClockSynced has no kernel to ask off Linux: assumed synced.
func KernelClockSynced() (bool, error) { return true, nil }

func systemWall() (time.Time, bool) { return time.Now(), true }
