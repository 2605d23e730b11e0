package agent

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.yaml.in/yaml/v3"

	"github.com/edge-agent/edge-agent/agent/fleetconfig"
)

// remotePart applies the site's desired fragments from its local copy,
// gates each apply on the site's health, and keeps the report the
// heartbeat carries.
type remotePart struct {
	local   *fleetconfig.Local
	changed chan struct{}

	mu   sync.Mutex
	st   fleetconfig.State
	sync string // the syncer's last problem
}

// remoteRecheck is how often a site checks that the hub bucket it watches
// still exists; tests shorten it.
var remoteRecheck = 30 * time.Second

func (a *Agent) setupRemoteConfig(ctx context.Context, cfg *Config) error {
	if !cfg.RemoteConfig.Enabled {
		return nil
	}
	local, err := fleetconfig.OpenLocal(ctx, a.js)
	if err != nil {
		return fmt.Errorf("remote config: %w", err)
	}
	st, err := fleetconfig.ReadState(cfg.StateDir)
	if err != nil {
		a.log.Error("remote config: unreadable state; running the local file and starting over", "err", err)
	}
	p := &remotePart{local: local, changed: make(chan struct{}, 1), st: st}
	a.rc = p
	keys := fleetconfig.KeysFor(cfg.Site, cfg.Groups)
	if cfg.Uplink != nil {
		hub, err := jetstream.NewWithDomain(a.nc, cfg.RemoteConfig.HubDomain)
		if err != nil {
			return fmt.Errorf("remote config: hub domain %q: %w", cfg.RemoteConfig.HubDomain, err)
		}
		s := &fleetconfig.Syncer{
			Hub: hub, Local: local, Keys: keys, LinkConn: a.leafConn, Changed: p.changed,
			Problem: func(msg string) {
				p.mu.Lock()
				p.sync = msg
				p.mu.Unlock()
				a.kickHeartbeat()
			},
			Log: a.log.With("component", "remote-config"), Recheck: remoteRecheck,
		}
		a.addPart("remote-config sync", s.Run)
	}
	a.addPart("remote-config", func(ctx context.Context) error { return a.runRemote(ctx, cfg, keys) })
	return nil
}

// RemoteConfigReport is the site's remote config state; nil when disabled.
func (a *Agent) RemoteConfigReport() *fleetconfig.Report {
	if a.rc == nil {
		return nil
	}
	a.rc.mu.Lock()
	defer a.rc.mu.Unlock()
	r := a.rc.st.Report
	if r.State == "" {
		r.State = fleetconfig.StateApplied
		r.Fragments = a.rc.st.Applied.Describe()
	}
	r.AgentVersion, r.Groups, r.Sync = Version, a.Config().Groups, a.rc.sync
	return &r
}

func (a *Agent) runRemote(ctx context.Context, boot *Config, keys []string) error {
	log := a.log.With("component", "remote-config")
	p := a.rc
	if t := p.state().Trial; t != nil {
		if err := a.healthGate(ctx, log, boot); err != nil {
			return err
		}
	}
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	for {
		have, err := p.local.Read(ctx, keys)
		if err != nil && ctx.Err() == nil {
			log.Warn("remote config: cannot read the local copy", "err", err)
		}
		if err == nil {
			if err := a.applyDesired(ctx, log, fleetconfig.Desired(boot.Site, boot.Groups, have)); err != nil {
				return err
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-p.changed:
			settle(ctx, p.changed)
		case <-tick.C:
		}
	}
}

// settle waits until the local copy has been quiet for a moment (bounded):
// fragments written together (a group and a site key, each watched on its
// own) then apply as one change, with one gate and at most one restart.
func settle(ctx context.Context, changed <-chan struct{}) {
	const quiet, most = 300 * time.Millisecond, 3 * time.Second
	end := time.After(most)
	for {
		select {
		case <-changed:
		case <-time.After(quiet):
			return
		case <-end:
			return
		case <-ctx.Done():
			return
		}
	}
}

func (p *remotePart) state() fleetconfig.State {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.st
}

// save writes the state before the agent acts on it.
func (a *Agent) saveRemote(st fleetconfig.State) error {
	if err := fleetconfig.WriteState(a.Config().StateDir, st); err != nil {
		return fmt.Errorf("remote config: write state: %w", err)
	}
	a.rc.mu.Lock()
	a.rc.st = st
	a.rc.mu.Unlock()
	a.kickHeartbeat()
	return nil
}

// applyDesired applies a desired set that differs from the running one:
// validate, record it as the trial (atomically, next to the last-known-
// good), then reload live or restart, and gate.
func (a *Agent) applyDesired(ctx context.Context, log *slog.Logger, want fleetconfig.Set) error {
	st := a.rc.state()
	if want.Same(st.Applied) {
		// Back to (or still on) the running set, e.g. a bad fragment was
		// deleted: nothing to apply, only the report to bring up to date.
		if want.Rev == st.Applied.Rev && st.Report.State == fleetconfig.StateApplied {
			return nil
		}
		st.Applied.Rev, st.Refused = max(st.Applied.Rev, want.Rev), nil
		st.Report = fleetconfig.Report{State: fleetconfig.StateApplied, DesiredRev: st.Applied.Rev, AppliedRev: st.Applied.Rev, At: time.Now().UTC(), Fragments: st.Applied.Describe()}
		return a.saveRemote(st)
	}
	if st.Refused != nil && want.Same(*st.Refused) {
		if want.Rev > st.Report.DesiredRev {
			st.Report.DesiredRev = want.Rev
			return a.saveRemote(st)
		}
		return nil
	}
	local, err := LoadConfig(a.Config().Path)
	if err != nil {
		log.Warn("remote config: the local file does not load; not applying", "err", err)
		return nil
	}
	next, err := mergeConfig(local, want)
	if err != nil {
		log.Warn("remote config: rejected; keeping the running config", "fragments", want.Describe(), "err", err)
		refuse(&st, want, fleetconfig.StateRejected, err.Error())
		return a.saveRemote(st)
	}
	cur := a.Config()
	t := &fleetconfig.Trial{
		Set: want, Started: time.Now().UTC(), Restart: len(restartKeys(cur, next)) > 0,
		LinkWasUp: a.leafConn() != 0, Failing: a.failingSensors(), Merged: effectiveYAML(next),
	}
	st.Trial = t
	st.Report.State, st.Report.Error, st.Report.At = fleetconfig.StatePending, "", t.Started
	st.Report.DesiredRev = max(st.Report.DesiredRev, want.Rev)
	if err := a.saveRemote(st); err != nil {
		return err
	}
	if t.Restart {
		log.Info("remote config: restarting to apply", "fragments", want.Describe(), "keys", restartKeys(cur, next))
		return ErrRestart
	}
	log.Info("remote config: applying live", "fragments", want.Describe())
	a.Reload(next)
	return a.healthGate(ctx, log, next)
}

func (a *Agent) failingSensors() []string {
	var out []string
	for _, h := range a.SensorHealth() {
		if !h.OK && h.Errors > 0 {
			out = append(out, h.Name)
		}
	}
	return out
}

// gate waits up to remote_config.gate for the site to be healthy on the
// trial, then keeps it as the last-known-good or rolls back.
func (a *Agent) healthGate(ctx context.Context, log *slog.Logger, cfg *Config) error {
	st := a.rc.state()
	t := st.Trial
	start := time.Now()
	deadline := start.Add(cfg.RemoteConfig.Gate)
	why := ""
	for {
		if why = a.unhealthy(cfg, t, start); why == "" {
			break
		}
		if time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			// Stopping mid-gate: the next boot decides (BootConfig).
			return nil
		case <-time.After(200 * time.Millisecond):
		}
	}
	if why == "" {
		st.Applied, st.Merged, st.Trial, st.Refused = t.Set, t.Merged, nil, nil
		st.Report = fleetconfig.Report{State: fleetconfig.StateApplied, DesiredRev: max(st.Report.DesiredRev, t.Set.Rev), AppliedRev: t.Set.Rev, At: time.Now().UTC(), Fragments: t.Set.Describe()}
		log.Info("remote config: applied", "fragments", t.Set.Describe())
		return a.saveRemote(st)
	}
	reason := fmt.Sprintf("health gate failed after %s: %s", cfg.RemoteConfig.Gate, why)
	log.Warn("remote config: rolling back to the last-known-good config", "fragments", t.Set.Describe(), "reason", why)
	refuse(&st, t.Set, fleetconfig.StateRolledBack, reason)
	if err := a.saveRemote(st); err != nil {
		return err
	}
	if t.Restart {
		return ErrRestart
	}
	local, err := LoadConfig(cfg.Path)
	if err != nil {
		return err
	}
	good, err := mergeConfig(local, st.Applied)
	if err != nil {
		good = local
	}
	a.Reload(good)
	return nil
}

// unhealthy says why the site is not healthy on a trial yet ("" if it is):
// a reading stored since start, the link up if it was before the apply, and
// every sensor tried and none newly failing.
func (a *Agent) unhealthy(cfg *Config, t *fleetconfig.Trial, start time.Time) string {
	if a.checking() {
		return "the start's check of the local streams is still running"
	}
	if t.LinkWasUp && a.leafConn() == 0 {
		return "the link to the hub is down (it was up before the change)"
	}
	if !a.sensorsRunning(cfg.Sensors) {
		return "the sensors of the change have not started"
	}
	hs := a.SensorHealth()
	stored := false
	for _, h := range hs {
		stored = stored || (h.OK && h.LastRead.After(start))
		if !h.OK && h.Errors > 0 && !slices.Contains(t.Failing, h.Name) {
			return fmt.Sprintf("sensor %s fails: %s", h.Name, h.LastError)
		}
		if h.LastRead.IsZero() && h.Errors == 0 {
			return fmt.Sprintf("sensor %s has not been read yet", h.Name)
		}
	}
	if len(cfg.Sensors) > 0 && !stored {
		return "no reading stored since the change"
	}
	return ""
}

// kickHeartbeat sends a heartbeat now, so the hub learns a config state
// change at once rather than at the next interval.
func (a *Agent) kickHeartbeat() {
	if a.hb != nil {
		a.hb.hb.Kick()
	}
}

// effectiveYAML is the config as check-config prints it (secrets
// redacted): what the state file keeps for operators; the agent itself
// always merges the local file with the fragments again.
func effectiveYAML(c *Config) string {
	out, err := yaml.Marshal(c.Redacted())
	if err != nil {
		return ""
	}
	return string(out)
}
