package sensors

import (
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

const bootIDPath = "/proc/sys/kernel/random/boot_id"

// bootMono reads CLOCK_BOOTTIME (counts suspend, never stepped by NTP);
// -1 when the kernel does not have it.
func bootMono() int64 {
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts) != nil {
		return -1
	}
	return ts.Nano()
}

// KernelClockSynced asks the kernel (adjtimex) whether NTP disciplines the
// clock: STA_UNSYNC is set until a time daemon has synchronised it, and
// again after the clock is set by hand.
func KernelClockSynced() (bool, error) {
	var tx unix.Timex
	state, err := unix.Adjtimex(&tx)
	if err != nil {
		return false, fmt.Errorf("adjtimex: %w", err)
	}
	return state != unix.TIME_ERROR && tx.Status&unix.STA_UNSYNC == 0, nil
}

// systemWall is the default Options.Wall. A failing adjtimex means
// "unknown": reported as not synced so the hub re-bases rather than trusts.
func systemWall() (time.Time, bool) {
	ok, err := KernelClockSynced()
	return time.Now(), ok && err == nil
}
