package agent

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/edge-agent/edge-agent/agent/fleetconfig"
	"github.com/edge-agent/edge-agent/buffer"
	"github.com/edge-agent/edge-agent/sensors"
	"github.com/edge-agent/edge-agent/uplink"
	"github.com/edge-agent/edge-agent/uplink/wire"
)

// StatusSchema is bumped when a Status field changes meaning; fields are
// only ever added, because the hub and scripts parse this JSON.
const StatusSchema = 1

// Status is the one picture of a site: `edge-agent status`, GET /v1/status,
// the hub's `<prefix>.<site>.agent.status` reply and the state.db snapshot
// all carry this type, so a technician and the fleet see the same thing.
type Status struct {
	Schema  int    `json:"schema"`
	Running bool   `json:"running"` // false: a snapshot from state.db, daemon stopped
	Version string `json:"version"`
	Commit  string `json:"commit"`
	// Time is when the status was taken; every age is relative to it.
	Time    time.Time `json:"time"`
	Started time.Time `json:"started,omitzero"`
	Site    string    `json:"site"`
	Domain  string    `json:"domain"`
	// Uplink is nil when the agent runs standalone (no uplink block).
	Uplink  *UplinkStatus  `json:"uplink,omitempty"`
	Backlog []LaneStatus   `json:"backlog"`
	Sensors []SensorStatus `json:"sensors"`
	Store   StoreStatus    `json:"store"`
	Clock   ClockStatus    `json:"clock"`
	Clients int            `json:"clients"` // local client connections
	// State and Warnings are Health() at Time, stored so JSON readers need
	// not reimplement the rules.
	State    wire.HealthState `json:"state"`
	Warnings []Warning        `json:"warnings"`
	// RemoteConfig is the hub-managed config's state; nil when off.
	RemoteConfig *fleetconfig.Report `json:"remote_config,omitempty"`
}

// UplinkStatus is the leaf link and the forwarder; either may be nil while
// its part is starting.
type UplinkStatus struct {
	Link      *uplink.LinkStatus      `json:"link,omitempty"`
	Forwarder *uplink.ForwarderStatus `json:"forwarder,omitempty"`
	// DuplicateSite says which other device uses this site id; empty when
	// none was seen. Two devices on one site id fight over the leaf and mix
	// their readings, so it is the loudest warning status has.
	DuplicateSite string `json:"duplicate_site,omitempty"`
}

// LaneStatus is the unforwarded backlog of one local stream.
type LaneStatus struct {
	Stream   string    `json:"stream"`
	Messages uint64    `json:"messages"`
	Bytes    uint64    `json:"bytes"`
	Oldest   time.Time `json:"oldest,omitzero"` // oldest unforwarded reading
	// Evicted counts readings the stream limits dropped before they were
	// forwarded: data the hub will never see.
	Evicted uint64 `json:"evicted_unforwarded"`
	// Lost counts readings damage took before they were forwarded, ever
	// (acknowledging the loss does not reset it).
	Lost uint64 `json:"lost_damaged,omitempty"`
	// Drain is the estimated time to forward the backlog at the current
	// rate; 0 when unknown (no rate yet) or nothing to drain.
	Drain time.Duration `json:"drain_ns,omitempty"`
	// ExpiredByAge counts readings buffer.max_age purged this run
	// (forwarded or not), aged on agent time.
	ExpiredByAge uint64 `json:"expired_by_age,omitempty"`
}

// SensorStatus is a sensor's health plus the interval it should keep, so a
// sensor that stopped reading is visible even though its last read was ok.
type SensorStatus struct {
	sensors.Health
	Interval time.Duration `json:"interval_ns"`
	Timeout  time.Duration `json:"timeout_ns"`
}

// StoreStatus is the on-disk store: what fills it and what it lives on.
type StoreStatus struct {
	Dir       string `json:"dir"`
	Bytes     uint64 `json:"bytes"`     // JetStream file store plus state.db
	MaxBytes  uint64 `json:"max_bytes"` // buffer.max_bytes
	DiskFree  uint64 `json:"disk_free"` // available to the agent's user
	DiskTotal uint64 `json:"disk_total"`
	ReadOnly  bool   `json:"read_only,omitempty"`
	Sync      string `json:"sync"` // buffer.sync: "always" or an interval
	Error     string `json:"error,omitempty"`
	// From the buffer's store watcher: conditions that stop local writes.
	DiskFull          bool     `json:"disk_full,omitempty"`
	JetStreamDisabled bool     `json:"jetstream_disabled,omitempty"`
	WriteErrors       []string `json:"write_errors,omitempty"`
	AsyncStreams      []string `json:"async_streams,omitempty"`
	// MissingStreams are agent streams that do not exist (deleted by a
	// client with the rights to): the agent recreates them at once, and
	// while that fails nothing is stored in them.
	MissingStreams []string `json:"missing_streams,omitempty"`
	// UncheckedStreams were created anew and not yet checked against
	// state.db: stored, but held back from the hub until their message
	// ids are known.
	UncheckedStreams []string `json:"unchecked_streams,omitempty"`
	// Checking is true from the agent's READY until the start's check of
	// the streams against state.db is done (normally milliseconds):
	// readings are stored, forwarding waits for it, and the damage it may
	// find is not known yet.
	Checking bool `json:"checking,omitempty"`
	// RecreatedStreams counts agent streams recreated this boot after
	// something deleted them.
	RecreatedStreams int `json:"recreated_streams,omitempty"`
	// Events are this boot's recoveries (state.db moved aside, a damaged
	// stream, disk full): each may mean lost or duplicated data.
	Events []buffer.StateEvent `json:"events,omitempty"`
	// Losses are acknowledged readings damage took before the hub had
	// them, kept until a technician runs `edge-agent buffer ack-loss`.
	Losses []buffer.Loss `json:"losses,omitempty"`
	// Age is what buffer.max_age enforcement did; nil without an age limit.
	Age *buffer.AgeStatus `json:"age,omitempty"`
}

// ClockStatus is the kernel's view of time synchronisation; readings carry
// timestamps, so an unsynchronised clock corrupts history silently.
type ClockStatus struct {
	State ClockState `json:"state"`
	Error string     `json:"error,omitempty"`
	// Jump is a wall-clock step seen in the last hour.
	Jump *buffer.ClockJump `json:"jump,omitempty"`
	// TestClock is set when TestClockEnv offsets the agent's wall clock.
	TestClock string `json:"test_clock,omitempty"`
	// Wall is the agent's wall clock (what stamps readings) and Floor the
	// build's date: a clock before it is certainly wrong.
	Wall  time.Time `json:"wall,omitzero"`
	Floor time.Time `json:"floor,omitzero"`
	// HubOffset is this clock minus the hub's, in seconds, measured on a
	// heartbeat round trip at HubMeasured; absent until measured (no
	// uplink, link down, a hub whose EDGE_STATUS does not republish).
	HubOffset   *float64  `json:"hub_offset_seconds,omitempty"`
	HubMeasured time.Time `json:"hub_measured,omitzero"`
}

// ClockState is whether the kernel keeps the clock synchronised.
type ClockState string

// Clock states.
const (
	ClockSynced   ClockState = "synchronised"
	ClockUnsynced ClockState = "unsynchronised"
	ClockUnknown  ClockState = "unknown"
)

// Warning is one thing a technician should look at.
type Warning struct {
	Severity  Severity `json:"severity"`
	Component string   `json:"component"` // uplink, sensor:<name>, store, clock, backlog, agent
	Message   string   `json:"message"`
	Fix       string   `json:"fix,omitempty"`
}

// Severity is how bad a warning is.
type Severity string

// Severities, worst first.
const (
	SevCritical Severity = "critical"
	SevWarning  Severity = "warning"
)

// The exit codes `edge-agent status` returns for the health states
// (wire.Healthy, wire.Degraded, wire.Down).
const (
	ExitHealthy  = 0
	ExitDegraded = 1
	ExitDown     = 2
)

// Thresholds behind the warnings; "down" is reserved for a site that is not
// collecting data (daemon stopped, store cannot take writes). A WAN outage
// is "degraded": the buffer is doing its job.
const (
	diskCriticalFree = 0.01 // fraction of the filesystem still free
	diskWarnFree     = 0.10
	// sensorStaleAfter intervals without a successful read make a sensor
	// that still says ok suspicious (its loop may be wedged).
	sensorStaleAfter = 3
)

// Health computes the overall state and the warnings, worst first. It is a
// pure function of s, so the CLI, the daemon and tests agree.
func (s Status) Health() (code int, warnings []Warning) {
	add := func(sev Severity, comp, msg, fix string) {
		warnings = append(warnings, Warning{Severity: sev, Component: comp, Message: msg, Fix: fix})
	}
	if !s.Running {
		add(SevCritical, "agent", "edge-agent is not running", "systemctl status edge-agent; journalctl -u edge-agent -n 50")
	}
	st := s.Store
	switch {
	case st.ReadOnly:
		add(SevCritical, "store", fmt.Sprintf("%s is on a read-only filesystem: readings cannot be stored", st.Dir), "check the SD card/disk (dmesg) and remount read-write")
	case st.DiskFull || st.DiskTotal > 0 && float64(st.DiskFree) < diskCriticalFree*float64(st.DiskTotal):
		add(SevCritical, "store", fmt.Sprintf("disk full: %s free of %s on %s", fmtBytes(st.DiskFree), fmtBytes(st.DiskTotal), st.Dir), "free space on that filesystem (old logs, core files) or lower buffer.max_bytes")
	case st.DiskTotal > 0 && float64(st.DiskFree) < diskWarnFree*float64(st.DiskTotal):
		add(SevWarning, "store", fmt.Sprintf("disk nearly full: %s free of %s on %s", fmtBytes(st.DiskFree), fmtBytes(st.DiskTotal), st.Dir), "free space on that filesystem or lower buffer.max_bytes")
	}
	if st.JetStreamDisabled {
		add(SevCritical, "store", "JetStream is disabled after a write error: readings cannot be stored", "the agent retries by itself; check dmesg for disk errors and `journalctl -u edge-agent`")
	}
	for _, m := range st.MissingStreams {
		add(SevCritical, "store", fmt.Sprintf("local stream %s is missing (deleted?): nothing is stored in it until it is recreated", m), "the agent recreates it by itself; if this persists, `journalctl -u edge-agent` says why (e.g. another stream took its subjects)")
	}
	if st.Checking {
		add(SevWarning, "store", "the start's check of the local streams against state.db is still running: readings are stored, forwarding waits for it, and damage it finds shows here once it is done", "normally done within a second of the start; if this persists, `journalctl -u edge-agent` says why")
	}
	for _, u := range st.UncheckedStreams {
		add(SevCritical, "store", fmt.Sprintf("local stream %s was created anew and is not checked against state.db yet: its readings are stored but not forwarded", u), "the agent retries every round by itself; if this persists, `journalctl -u edge-agent` says why")
	}
	for _, e := range st.WriteErrors {
		add(SevCritical, "store", "stream write error: "+e, "check dmesg for disk errors; `edge-agent doctor` checks the state dir")
	}
	if len(st.AsyncStreams) > 0 {
		add(SevWarning, "store", fmt.Sprintf("streams %s acknowledge before disk (persist_mode async): a power cut loses data", strings.Join(st.AsyncStreams, ", ")), "")
	}
	for _, l := range st.Losses {
		add(SevCritical, "store", fmt.Sprintf("LOST %d acknowledged readings of %s, seq %d..%d: %s (%s)", l.Count, l.Stream, l.From, l.To, l.Cause, l.Time.UTC().Format(time.RFC3339)),
			"the readings are gone: check the SD card (dmesg, `edge-agent doctor`); the damaged file is kept in state_dir/damaged; then `edge-agent buffer ack-loss`")
	}
	for _, e := range st.Events {
		add(SevWarning, "store", fmt.Sprintf("recovery this boot: %s: %s", e.Kind, e.Detail), "")
	}
	if st.Error != "" {
		add(SevWarning, "store", st.Error, "")
	}
	if u := s.Uplink; u != nil && u.DuplicateSite != "" {
		add(SevCritical, "uplink", "DUPLICATE SITE: "+u.DuplicateSite, reasonFix(uplink.ReasonDuplicate)+"; on a cloned SD card also run `rm /etc/machine-id && systemd-machine-id-setup`")
	}
	if u := s.Uplink; u != nil && u.Link != nil && u.Link.State != uplink.StateConnected {
		msg := "uplink " + string(u.Link.State)
		if !u.Link.DownSince.IsZero() {
			msg += " for " + fmtAge(s.Time.Sub(u.Link.DownSince))
		}
		if u.Link.Reason != "" {
			msg += ": " + u.Link.Reason
		}
		fix := u.Link.Fix
		if fix == "" {
			fix = reasonFix(u.Link.ReasonClass)
		}
		add(SevWarning, "uplink", msg, fix)
	}
	if u := s.Uplink; u != nil && u.Forwarder != nil && u.Forwarder.LastError != "" && u.Link != nil && u.Link.State == uplink.StateConnected {
		add(SevWarning, "uplink", "forwarder: "+u.Forwarder.LastError, "")
	}
	if u := s.Uplink; u != nil && u.Forwarder != nil && u.Forwarder.DroppedDuplicate > 0 {
		f := u.Forwarder
		add(SevWarning, "uplink", fmt.Sprintf("%d new readings dropped by the hub as duplicates of other messages with their ids (last: %s): they are not at the hub", f.DroppedDuplicate, f.LastDuplicate),
			"another device may run with this site's name and a copy of its store: check `edge-agent fleet` at the hub; the readings stay in the local stream")
	}
	for _, l := range s.Backlog {
		if l.Evicted > 0 {
			add(SevWarning, "backlog", fmt.Sprintf("%s: %d readings evicted before they were forwarded", l.Stream, l.Evicted), "restore the uplink, or raise buffer.max_bytes/max_age if outages last this long")
		}
	}
	for _, se := range s.Sensors {
		comp := "sensor:" + se.Name
		switch {
		case !se.OK && se.LastError != "":
			add(SevWarning, comp, fmt.Sprintf("%s failing: %s", se.Name, se.LastError), "")
		case !se.OK && se.LastRead.IsZero():
			add(SevWarning, comp, se.Name+" has not been read yet", "")
		case se.Interval > 0 && !se.LastRead.IsZero() && s.Time.Sub(se.LastRead) > sensorStaleAfter*se.Interval:
			add(SevWarning, comp, fmt.Sprintf("%s: no reading for %s (interval %s)", se.Name, fmtAge(s.Time.Sub(se.LastRead)), fmtAge(se.Interval)), "")
		}
	}
	clockHealth(s.Clock, s.Time, add)
	if s.Clock.TestClock != "" {
		add(SevWarning, "clock", "TEST CLOCK in effect: "+s.Clock.TestClock, "unset "+TestClockEnv+" in the service environment and restart: it is for tests only")
	}
	if j := s.Clock.Jump; j != nil {
		add(SevWarning, "clock", fmt.Sprintf("wall clock jumped by %s at %s: timestamps around it may be wrong (buffered readings age on agent time: none expired because of it)", fmtJump(j.Size), j.At.UTC().Format(time.RFC3339)), "timedatectl status; check the RTC and NTP")
	}
	sevRank := map[Severity]int{SevCritical: 0, SevWarning: 1}
	slices.SortStableFunc(warnings, func(a, b Warning) int { return cmp.Compare(sevRank[a.Severity], sevRank[b.Severity]) })
	code = ExitHealthy
	for _, w := range warnings {
		if w.Severity == SevCritical {
			return ExitDown, warnings
		}
		code = ExitDegraded
	}
	return code, warnings
}

// StateName maps a Health code to its word.
func StateName(code int) wire.HealthState {
	switch code {
	case ExitHealthy:
		return wire.Healthy
	case ExitDegraded:
		return wire.Degraded
	}
	return wire.Down
}

func describeTwin(tw uplink.Twin) string {
	if tw.Server == "" {
		return "the hub replaced this device's leaf connection with another device of the same name (a cloned SD card image?)"
	}
	return fmt.Sprintf("device %s (instance %s) also publishes as this site", tw.Server, tw.Instance)
}

// reasonFix is the next step for each class of uplink failure, where the
// link gave none (a state.db snapshot from an older agent, the forwarder's
// classes): the link's own fixes without this site's config.
func reasonFix(class uplink.ReasonClass) string {
	switch class {
	case uplink.ReasonDuplicate:
		return "another device uses this site id: each site needs its own"
	}
	if fix := uplink.FixFor(&uplink.Config{}, class, ""); fix != "" {
		return fix
	}
	return "`edge-agent doctor` checks the link step by step"
}

// Status gathers the status from every part; parts not yet running leave
// their section empty rather than failing the whole answer.
func (a *Agent) Status(ctx context.Context) Status {
	cfg := a.Config()
	now := time.Now()
	s := Status{
		Schema: StatusSchema, Running: true, Version: Version, Commit: Commit,
		Time: now, Started: a.started, Site: cfg.Site, Domain: cfg.Site,
		Backlog: []LaneStatus{}, Sensors: []SensorStatus{},
	}
	if a.srv != nil {
		s.Domain = a.srv.JetStreamConfig().Domain
		s.Clients = a.srv.NumClients()
		if a.nc != nil {
			s.Clients-- // the agent's own connection
		}
	}
	if cfg.Uplink != nil {
		s.Uplink = &UplinkStatus{Link: a.LinkStatus(), Forwarder: a.ForwarderStatus()}
		if tw, ok := a.DuplicateSite(); ok {
			s.Uplink.DuplicateSite = describeTwin(tw)
		}
	}
	s.Backlog = a.backlog(ctx, s.Uplink)
	conf := map[string]sensors.Config{}
	for _, c := range cfg.Sensors {
		conf[c.Name] = c
	}
	for _, h := range a.SensorHealth() {
		s.Sensors = append(s.Sensors, SensorStatus{Health: h, Interval: conf[h.Name].Interval, Timeout: conf[h.Name].Timeout})
	}
	s.Store = a.storeStatus(cfg)
	s.Clock = clockStatus()
	a.clockAgainstHub(&s.Clock, now)
	if a.buf != nil && a.buf.ager != nil {
		age := a.buf.ager.Status()
		s.Store.Age, s.Clock.Jump = &age, age.Jump
		for i := range s.Backlog {
			s.Backlog[i].ExpiredByAge = age.Expired[s.Backlog[i].Stream]
		}
	}
	if a.buf != nil && a.buf.clock != nil {
		s.Clock.TestClock = a.buf.clock.testClock()
	}
	code, w := s.Health()
	s.State, s.Warnings = StateName(code), w
	s.RemoteConfig = a.RemoteConfigReport()
	return s
}

// backlog is the unforwarded backlog per lane with its drain estimate.
func (a *Agent) backlog(ctx context.Context, up *UplinkStatus) []LaneStatus {
	lanes, err := a.laneStats(ctx)
	if err != nil {
		a.log.Debug("status: backlog unavailable", "err", err)
	}
	var rate float64
	if up != nil && up.Forwarder != nil {
		rate = up.Forwarder.RatePerSec
	}
	for i := range lanes {
		if rate > 0 && lanes[i].Messages > 0 {
			lanes[i].Drain = time.Duration(float64(lanes[i].Messages) / rate * float64(time.Second))
		}
	}
	if lanes == nil {
		lanes = []LaneStatus{}
	}
	return lanes
}

func (a *Agent) storeStatus(cfg *Config) StoreStatus {
	st := StoreStatus{Dir: cfg.StateDir, MaxBytes: uint64(cfg.Buffer.MaxBytes), Sync: cfg.Buffer.Sync}
	h := a.BufferHealth()
	st.DiskFull, st.JetStreamDisabled, st.WriteErrors, st.AsyncStreams, st.Events = h.DiskFull, h.JetStreamDisabled, h.WriteErrors, h.AsyncStreams, h.Events
	st.MissingStreams, st.UncheckedStreams, st.RecreatedStreams = h.Missing, h.Unchecked, h.Recreated
	st.Checking = a.checking()
	if bs := a.State(); bs != nil {
		st.Losses = bs.Losses()
	}
	if a.srv != nil {
		if js, err := a.srv.Jsz(nil); err == nil {
			st.Bytes = js.Store
		}
	}
	if fi, err := os.Stat(filepath.Join(cfg.StateDir, "state.db")); err == nil {
		st.Bytes += uint64(fi.Size())
	}
	var fs unix.Statfs_t
	if err := unix.Statfs(cfg.StateDir, &fs); err != nil {
		st.Error = fmt.Sprintf("statfs %s: %v", cfg.StateDir, err)
		return st
	}
	st.DiskFree = fs.Bavail * uint64(fs.Bsize)
	st.DiskTotal = fs.Blocks * uint64(fs.Bsize)
	st.ReadOnly = int64(fs.Flags)&unix.ST_RDONLY != 0
	return st
}

// clockStatus asks the kernel (adjtimex) whether NTP disciplines the clock:
// STA_UNSYNC is set until a time daemon has synchronised it.
func clockStatus() ClockStatus {
	synced, err := sensors.KernelClockSynced()
	switch {
	case err != nil:
		return ClockStatus{State: ClockUnknown, Error: err.Error()}
	case !synced:
		return ClockStatus{State: ClockUnsynced}
	}
	return ClockStatus{State: ClockSynced}
}

// fmtJump prints a clock jump with its direction, coarsely.
func fmtJump(d time.Duration) string {
	if d < 0 {
		return "-" + fmtAge(-d)
	}
	return "+" + fmtAge(d)
}
