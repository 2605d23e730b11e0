package sensors

import (
	"os"
	"strings"
	"time"
)

// Reading is the payload of telemetry.<sensor>: one message per sample with
// all its metrics. It is the contract local apps and the hub build against:
// fields are added, never renamed.
//
// Gateways often have no RTC: until NTP syncs, ts may be 1970 or the last
// shutdown time. Each reading therefore also carries the boot it was taken
// in and the time since that boot (CLOCK_BOOTTIME, never stepped). The hub
// re-bases an unsynced reading R with any synced reading S of the same
// boot_id: ts_corrected = (S.ts - S.mono_ns) + R.mono_ns.
type Reading struct {
	Sensor string `json:"sensor"`
	Driver string `json:"driver"`
	// Seq counts samples per sensor from 1 at agent start; a gap means
	// readings were dropped (see Health.Dropped).
	Seq         uint64           `json:"seq"`
	Time        time.Time        `json:"ts"`
	BootID      string           `json:"boot_id"`
	Mono        int64            `json:"mono_ns"`
	ClockSynced bool             `json:"clock_synced"`
	Values      map[string]Value `json:"values"`
	// Quality is "ok", or "degraded" when any value carries a flag.
	Quality Quality `json:"quality"`
}

// Alert is the payload of alerts.<sensor>: a threshold crossing
// ("raised") and its end once the value is back inside by the hysteresis
// ("cleared"). Alerts go to the ALERTS stream, forwarded before telemetry.
type Alert struct {
	Sensor      string     `json:"sensor"`
	Metric      string     `json:"metric"`
	State       AlertState `json:"state"`
	Kind        AlertKind  `json:"kind"`
	Threshold   float64    `json:"threshold"`
	Hysteresis  float64    `json:"hysteresis"`
	Value       Value      `json:"value"`
	Seq         uint64     `json:"seq"` // the reading that crossed
	Time        time.Time  `json:"ts"`
	BootID      string     `json:"boot_id"`
	Mono        int64      `json:"mono_ns"`
	ClockSynced bool       `json:"clock_synced"`
}

// Quality says whether a reading's values are all good.
type Quality string

// Quality values of a Reading.
const (
	QualityOK       Quality = "ok"
	QualityDegraded Quality = "degraded"
)

// AlertState is an alert's phase: raised on the crossing, cleared once the
// value is back inside by the hysteresis.
type AlertState string

// Alert states.
const (
	AlertRaised  AlertState = "raised"
	AlertCleared AlertState = "cleared"
)

// AlertKind is the threshold an alert is about.
type AlertKind string

// Alert kinds: the value went above alert_above or below alert_below.
const (
	AlertAbove AlertKind = "above"
	AlertBelow AlertKind = "below"
)

// stamp is the time of one sample in the three forms a reading carries.
type stamp struct {
	wall   time.Time
	mono   int64
	synced bool
}

// bootID identifies this kernel boot; mono_ns is only comparable within one.
func bootID(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}
