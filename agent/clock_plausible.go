package agent

import (
	"fmt"
	"time"

	"github.com/edge-agent/edge-agent/uplink/wire"
)

// BuildDate is the build's commit date (RFC3339), stamped with -ldflags -X
// like Version. A clock before it is certainly wrong.
var BuildDate = ""

// sourceFloor stands in for BuildDate in unstamped builds (go test, go
// run): no build of this source can run before it.
var sourceFloor = time.Date(2026, time.November, 1, 0, 0, 0, 0, time.UTC)

// ClockFloor is the earliest time the clock can plausibly read.
func ClockFloor() time.Time {
	if t, err := time.Parse(time.RFC3339, BuildDate); err == nil && t.After(sourceFloor) {
		return t.UTC()
	}
	return sourceFloor
}

// clockAgainstHub fills the agent's wall clock, the floor and the offset
// against the hub's clock the heartbeat measured.
func (a *Agent) clockAgainstHub(c *ClockStatus, now time.Time) {
	c.Wall, c.Floor = now.Round(0), ClockFloor()
	if a.buf != nil && a.buf.clock != nil {
		c.Wall = a.buf.clock.Now()
	}
	if a.hb == nil {
		return
	}
	if cs, ok := a.hb.hb.HubClock(); ok {
		off := cs.Offset.Seconds()
		c.HubOffset, c.HubMeasured = &off, cs.At
	}
}

// clockHealth: the clock is a problem only when its time is implausible,
// before the build (a device without RTC boots in 1970: every reading is
// stamped decades early) or off the hub's by more than
// wire.MaxClockOffset. Unsynchronised alone is not: a container without
// NTP whose clock agrees with the hub is fine.
func clockHealth(c ClockStatus, now time.Time, add func(sev Severity, comp, msg, fix string)) {
	wall := c.Wall
	if wall.IsZero() {
		wall = now
	}
	if !c.Floor.IsZero() && wall.Before(c.Floor) {
		add(SevCritical, "clock", fmt.Sprintf("clock reads %s, before this build (%s): every reading is stamped wrong", wall.UTC().Format(time.RFC3339), c.Floor.Format(time.DateOnly)),
			"set the time: enable NTP (timedatectl set-ntp true; allow UDP 123 out) or fit an RTC")
		return
	}
	if c.HubOffset != nil {
		off := time.Duration(*c.HubOffset * float64(time.Second))
		if off > wire.MaxClockOffset || off < -wire.MaxClockOffset {
			add(SevWarning, "clock", fmt.Sprintf("clock is %s the hub's: reading timestamps are off by as much", fmtOffset(off)),
				"timedatectl status; enable NTP (timedatectl set-ntp true; allow UDP 123 out)")
		}
	}
}
