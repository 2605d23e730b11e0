package sensors

import (
	"time"

	"golang.org/x/sys/unix"
)

const bootIDPath = "/proc/sys/kernel/random/boot_id"

// now reads wall time, CLOCK_BOOTTIME (counts suspend, never stepped by
// NTP) and the kernel's NTP state. A failing adjtimex means "unknown":
// reported as not synced so the hub re-bases rather than trusts.
func now() stamp {
	var ts unix.Timespec
	mono := int64(-1)
	if unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts) == nil {
		mono = ts.Nano()
	}
	var tx unix.Timex
	state, err := unix.Adjtimex(&tx)
	synced := err == nil && state != unix.TIME_ERROR && tx.Status&unix.STA_UNSYNC == 0
	return stamp{wall: time.Now(), mono: mono, synced: synced}
}
