//go:build !linux

package sensors

import "time"

const bootIDPath = ""

var processStart = time.Now()

// now on non-Linux (development only) has no boot clock: the offset is
// since process start and the clock is assumed synced.
func now() stamp {
	return stamp{wall: time.Now(), mono: int64(time.Since(processStart)), synced: true}
}
