package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/edge-agent/edge-agent/agent/fleetconfig"
	"github.com/edge-agent/edge-agent/internal/testkit"
	"github.com/edge-agent/edge-agent/internal/wanfault"
	"github.com/edge-agent/edge-agent/uplink/hubops"
	"github.com/edge-agent/edge-agent/uplink/wire"
)

// rcSite runs an agent from a real agent.yaml the way systemd would: a
// run that ends with ErrRestart is started again from BootConfig.
type rcSite struct {
	t        *testing.T
	path     string
	logs     *testkit.SyncBuffer
	cancel   context.CancelFunc
	done     chan error
	mu       sync.Mutex
	cur      *Agent
	restarts int
	once     sync.Once
}

func startRCSite(t *testing.T, dir, body string) *rcSite {
	t.Helper()
	return runRCSite(t, writeRCConfig(t, dir, body))
}

// writeRCConfig writes dir/agent.yaml for a site with its state in dir.
func writeRCConfig(t *testing.T, dir, body string) string {
	t.Helper()
	return writeFile(t, dir, "agent.yaml", agentYAML(dir, dir, body), 0o600)
}

func runRCSite(t *testing.T, path string) *rcSite {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &rcSite{t: t, path: path, logs: &testkit.SyncBuffer{}, cancel: cancel, done: make(chan error, 1)}
	go func() {
		for {
			cfg, err := BootConfig(path)
			if err != nil {
				s.done <- err
				return
			}
			level := new(slog.LevelVar)
			a := New(cfg, NewLogger(s.logs, "text", level), level)
			s.mu.Lock()
			s.cur = a
			s.mu.Unlock()
			err = a.Run(ctx)
			if errors.Is(err, ErrRestart) && ctx.Err() == nil {
				s.mu.Lock()
				s.restarts++
				s.mu.Unlock()
				continue
			}
			s.done <- err
			return
		}
	}()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("site log:\n%s", s.logs)
		}
	})
	t.Cleanup(s.stop)
	s.agent()
	return s
}

// agent is the current run once it is ready.
func (s *rcSite) agent() *Agent {
	s.t.Helper()
	var a *Agent
	testkit.WaitFor(s.t, 30*time.Second, func() error {
		s.mu.Lock()
		a = s.cur
		s.mu.Unlock()
		if a == nil {
			return errors.New("still waiting for agent ready")
		}
		select {
		case <-a.Ready():
			return nil
		default:
			return errors.New("still waiting for agent ready")
		}
	})
	return a
}

func (s *rcSite) stop() {
	s.once.Do(func() {
		s.cancel()
		select {
		case <-s.done:
		case <-time.After(30 * time.Second):
			s.t.Errorf("site did not stop\n%s", s.logs)
		}
	})
}

func (s *rcSite) restartCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.restarts
}

func (s *rcSite) report() fleetconfig.Report {
	if r := s.agent().RemoteConfigReport(); r != nil {
		return *r
	}
	return fleetconfig.Report{}
}

// waitReport waits for the site to report state at revision rev or later.
func (s *rcSite) waitReport(d time.Duration, state string, rev uint64) fleetconfig.Report {
	s.t.Helper()
	var r fleetconfig.Report
	testkit.WaitFor(s.t, d, func() error {
		if r = s.report(); r.State != state || r.DesiredRev < rev {
			return fmt.Errorf("site reports %+v, want %s at rev %d", r, state, rev)
		}
		return nil
	})
	return r
}

// rcHub is a hub with JetStream in domain hub and the config bucket.
func rcHub(t *testing.T) (*server.Server, jetstream.KeyValue) {
	t.Helper()
	hub, js := startHub(t, nil, statusStream)
	return hub, configBucket(t, js)
}

// configBucket creates the fleet config bucket as `edge-agent hub init` does.
func configBucket(t *testing.T, js jetstream.JetStream) jetstream.KeyValue {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := fleetconfig.EnsureBucket(ctx, js, 1)
	if err != nil {
		t.Fatal(err)
	}
	return kv
}

func put(t *testing.T, kv jetstream.KeyValue, key, body string) uint64 {
	t.Helper()
	rev, err := kv.Put(context.Background(), key, []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	return rev
}

// hubReport is the config state in the site's last heartbeat at the hub,
// and that heartbeat's size.
func hubReport(t *testing.T, hub *server.Server, site string) (*fleetconfig.Report, int) {
	t.Helper()
	js := jsConnect(t, hub.ClientURL())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, hubops.StatusStream)
	if err != nil {
		return nil, 0
	}
	m, err := s.GetLastMsgForSubject(ctx, wire.StatusSubject("edge", site))
	if err != nil {
		return nil, 0
	}
	var hb wire.Heartbeat
	if json.Unmarshal(m.Data, &hb) != nil {
		return nil, 0
	}
	return hb.Config, len(m.Data)
}

// waitHubReport waits until s1's last heartbeat in the hub's status table
// carries a config report that ok accepts (what names it).
func waitHubReport(t *testing.T, hub *server.Server, what string, ok func(fleetconfig.Report) bool) {
	t.Helper()
	testkit.WaitFor(t, 10*time.Second, func() error {
		if h, _ := hubReport(t, hub, "s1"); h == nil || !ok(*h) {
			return fmt.Errorf("still waiting for the hub to hear %s, it has %+v", what, h)
		}
		return nil
	})
}

const rcSensors = "sensors:\n  - {name: room, driver: sim, interval: 50ms}\n"

// A fragment set at the hub while the site is online is applied within
// seconds, live (log_level, a new sensor), and the hub hears it in the
// heartbeat; merge order is fleet, group, site, with sensors merged by name.
func TestRemoteConfigAppliedOnline(t *testing.T) {
	hub, kv := rcHub(t)
	s := startRCSite(t, t.TempDir(), fmt.Sprintf("groups: [north]\nuplink:\n  hub_urls: [%s]\nremote_config: {enabled: true, gate: 5s}\n%s", leafURL(t, hub, "nats"), rcSensors))
	put(t, kv, "fleet", "log_level: warn\n")
	put(t, kv, "group.north", "log_level: debug\nsensors:\n  - {name: door, driver: sim, interval: 50ms}\n")
	rev := put(t, kv, "site.s1", "sensors:\n  - {name: room, interval: 75ms}\n")
	// Each key is watched on its own: the three may arrive in any order,
	// and the site converges on all three.
	want := fmt.Sprintf("fleet@%d group.north@%d site.s1@%d", rev-2, rev-1, rev)
	testkit.WaitFor(t, 20*time.Second, func() error {
		r := s.report()
		if !(r.State == fleetconfig.StateApplied && r.AppliedRev == rev && r.Fragments == want) {
			return fmt.Errorf("still waiting for %s", "applied "+want)
		}
		return nil
	})
	cfg := s.agent().Config()
	if cfg.LogLevel != "debug" || len(cfg.Sensors) != 2 || cfg.Sensors[0].Name != "room" || cfg.Sensors[0].Interval != 75*time.Millisecond || cfg.Sensors[1].Name != "door" {
		t.Fatalf("merged config: log_level %s sensors %+v", cfg.LogLevel, cfg.Sensors)
	}
	if n := s.restartCount(); n != 0 {
		t.Fatalf("live-applicable keys restarted the agent %d times", n)
	}
	waitHubReport(t, hub, "the applied state", func(h fleetconfig.Report) bool {
		return h.State == fleetconfig.StateApplied && h.AppliedRev == rev
	})
	var buf strings.Builder
	RenderStatus(&buf, s.agent().Status(context.Background()), time.Now(), false)
	if want := fmt.Sprintf("config    local file + fleet@%d group.north@%d site.s1@%d (applied rev %d)", rev-2, rev-1, rev, rev); !strings.Contains(buf.String(), want) {
		t.Fatalf("status lacks %q:\n%s", want, buf.String())
	}
}

// A change made while the site's WAN is down applies when it returns, and
// a reboot with the WAN down keeps the applied config.
func TestRemoteConfigOffline(t *testing.T) {
	hub, kv := rcHub(t)
	wan, err := wanfault.Start(strings.TrimPrefix(leafURL(t, hub, "nats"), "nats://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(wan.Close)
	dir := t.TempDir()
	s := startRCSite(t, dir, fmt.Sprintf("uplink:\n  hub_urls: [%s]\n  reconnect: {min: 100ms, max: 500ms}\nremote_config: {enabled: true, gate: 5s}\n%s", wan.URL("nats"), rcSensors))
	testkit.WaitFor(t, 10*time.Second, func() error {
		if s.agent().leafConn() == 0 {
			return errors.New("still waiting for link up")
		}
		return nil
	})
	if err := wan.Unplug(); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 10*time.Second, func() error {
		if s.agent().leafConn() != 0 {
			return errors.New("still waiting for link down")
		}
		return nil
	})
	rev := put(t, kv, "site.s1", "log_level: debug\n")
	time.Sleep(2 * time.Second) // long enough for a sync that should not happen
	if lvl := s.agent().Config().LogLevel; lvl != "info" {
		t.Fatalf("applied %s with the WAN down", lvl)
	}
	if err := wan.Restore(); err != nil {
		t.Fatal(err)
	}
	s.waitReport(20*time.Second, fleetconfig.StateApplied, rev)
	if lvl := s.agent().Config().LogLevel; lvl != "debug" {
		t.Fatalf("log_level %s after the WAN came back", lvl)
	}

	// Reboot with no WAN: the applied config comes from the site alone.
	if err := wan.Unplug(); err != nil {
		t.Fatal(err)
	}
	s.stop()
	s2 := runRCSite(t, s.path)
	if lvl := s2.agent().Config().LogLevel; lvl != "debug" {
		t.Fatalf("after a reboot with the WAN down: log_level %s\n%s", lvl, s2.logs)
	}
	if r := s2.report(); r.State != fleetconfig.StateApplied || r.AppliedRev != rev {
		t.Fatalf("after reboot: %+v", r)
	}
}

// A fragment written to the bucket by other means than the CLI (unknown
// key, a key the site does not allow) is rejected by the site, which keeps
// running its config and says which key in which fragment.
func TestRemoteConfigRejected(t *testing.T) {
	hub, kv := rcHub(t)
	s := startRCSite(t, t.TempDir(), fmt.Sprintf("uplink:\n  hub_urls: [%s]\nremote_config: {enabled: true, gate: 5s}\n", leafURL(t, hub, "nats")))
	good := put(t, kv, "fleet", "log_level: debug\n")
	s.waitReport(20*time.Second, fleetconfig.StateApplied, good)
	for _, tc := range []struct{ body, want string }{
		{"log_levle: warn\n", `fragment site.s1@%d:1: log_levle: unknown key "log_levle"`},
		{"buffer: {max_bytes: lots}\n", `fragment site.s1@%d:1: buffer.max_bytes: invalid size "lots"`},
		{"listen: 0.0.0.0:4222\n", `fragment site.s1@%d: listen: not in the site's remote_config.allow`},
		{"site: other\n", `fragment site.s1@%d: site: the hub may never set this key`},
		{"sensors:\n  - {name: x, driver: nope}\n", `fragment site.s1@%d:2: sensors[0].driver`},
	} {
		rev := put(t, kv, "site.s1", tc.body)
		r := s.waitReport(20*time.Second, fleetconfig.StateRejected, rev)
		if want := fmt.Sprintf(tc.want, rev); !strings.Contains(r.Error, want) {
			t.Errorf("%q: error %q, want %q", tc.body, r.Error, want)
		}
		if r.AppliedRev != good || s.agent().Config().LogLevel != "debug" {
			t.Errorf("%q: the running config changed: %+v", tc.body, r)
		}
		// The hub hears it at once, in a heartbeat still under 1 KiB.
		testkit.WaitFor(t, 10*time.Second, func() error {
			h, n := hubReport(t, hub, "s1")
			if h != nil && h.DesiredRev == rev && n >= 1024 {
				t.Fatalf("heartbeat of %d bytes", n)
			}
			if !(h != nil && h.State == fleetconfig.StateRejected && h.DesiredRev == rev) {
				return errors.New("still waiting for the rejection at the hub")
			}
			return nil
		})
	}
	// Deleting the bad fragment brings the site back to applied.
	if err := kv.Delete(context.Background(), "site.s1"); err != nil {
		t.Fatal(err)
	}
	s.waitReport(20*time.Second, fleetconfig.StateApplied, good+6)
}

// A hub_urls change to a hub that does not answer (allowed explicitly by
// the local file) restarts the agent, fails the gate because the link was
// up before, and comes back on the old hub by itself, reporting why.
func TestRemoteConfigUnreachableHubRollsBack(t *testing.T) {
	hub, kv := rcHub(t)
	s := startRCSite(t, t.TempDir(), fmt.Sprintf("uplink:\n  hub_urls: [%s]\n  reconnect: {min: 100ms, max: 500ms}\nremote_config:\n  enabled: true\n  gate: 3s\n  allow: [uplink.hub_urls, log_level]\n", leafURL(t, hub, "nats")))
	testkit.WaitFor(t, 10*time.Second, func() error {
		if s.agent().leafConn() == 0 {
			return errors.New("still waiting for link up")
		}
		return nil
	})
	start := time.Now()
	rev := put(t, kv, "site.s1", "uplink: {hub_urls: [\"nats://127.0.0.1:1\"]}\n")
	r := s.waitReport(30*time.Second, fleetconfig.StateRolledBack, rev)
	if !strings.Contains(r.Error, "link to the hub is down") {
		t.Fatalf("reason %q", r.Error)
	}
	testkit.WaitFor(t, 20*time.Second, func() error {
		if s.agent().leafConn() == 0 {
			return errors.New("still waiting for link back on the old hub")
		}
		return nil
	})
	if took := time.Since(start); took > 20*time.Second {
		t.Fatalf("rollback took %s", took)
	}
	if u := s.agent().Config().Uplink.HubURLs[0]; u != leafURL(t, hub, "nats") {
		t.Fatalf("running on %s", u)
	}
	if n := s.restartCount(); n != 2 {
		t.Fatalf("%d restarts, want 2 (apply, rollback)", n)
	}
	waitHubReport(t, hub, "rolled_back", func(h fleetconfig.Report) bool {
		return h.State == fleetconfig.StateRolledBack && h.DesiredRev == rev
	})
}

// Against a hub whose leaf users carry hubops.SitePermissions (the README's
// hub config), a site watches and applies its own keys, and a client on
// the site cannot read another site's key through the leaf, nor write the
// bucket.
func TestRemoteConfigSitePermissions(t *testing.T) {
	hub := serverFromConfig(t, fmt.Sprintf(`listen: 127.0.0.1:-1
leafnodes { listen: 127.0.0.1:-1 }
jetstream { store_dir: %q, domain: hub }
no_auth_user: ops
accounts { EDGE { jetstream: enabled, users: [
%s
%s
{user: ops, password: ops}
] } }
`, t.TempDir(), hubops.HubLeafUser("edge", "s1", "pw1"), hubops.HubLeafUser("edge", "s2", "pw2")))
	kv := configBucket(t, jsConnect(t, hub.ClientURL()))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	put(t, kv, "site.s2", "log_level: error\n")
	rev := put(t, kv, "site.s1", "log_level: debug\n")
	u := strings.Replace(leafURL(t, hub, "nats"), "nats://", "nats://s1:pw1@", 1)
	sdir := t.TempDir()
	s := startRCSite(t, sdir, fmt.Sprintf("uplink:\n  hub_urls: [%s]\nremote_config: {enabled: true, gate: 5s}\n", u))
	s.waitReport(20*time.Second, fleetconfig.StateApplied, rev)
	// The state file keeps the effective config for operators, without the
	// leaf password from hub_urls.
	if st, err := os.ReadFile(fleetconfig.StatePath(sdir)); err != nil || strings.Contains(string(st), "pw1") || !strings.Contains(string(st), "log_level: debug") {
		t.Fatalf("state file (%v):\n%s", err, st)
	}

	local := connect(t, s.agent().ClientURL())
	hubJS, err := jetstream.NewWithDomain(local, "hub")
	if err != nil {
		t.Fatal(err)
	}
	hkv, err := hubJS.KeyValue(ctx, fleetconfig.Bucket)
	if err != nil {
		t.Fatalf("the site cannot open the bucket: %v", err)
	}
	wctx, wcancel := context.WithTimeout(ctx, 3*time.Second)
	defer wcancel()
	if w, err := hkv.Watch(wctx, "site.s2"); err == nil {
		select {
		case e := <-w.Updates():
			if e != nil {
				t.Fatalf("site s1 read site.s2: %q", e.Value())
			}
		case <-wctx.Done():
		}
	}
	pctx, pcancel := context.WithTimeout(ctx, 3*time.Second)
	defer pcancel()
	if _, err := hkv.Put(pctx, "site.s1", []byte("log_level: warn\n")); err == nil {
		t.Fatal("a site client wrote the hub bucket")
	}
	if e, _ := kv.Get(ctx, "site.s1"); e.Revision() != rev {
		t.Fatalf("site.s1 changed to rev %d", e.Revision())
	}
}

// A staged rollout over four sites of a group: a fragment whose new sensor
// fails rolls back in the first wave, the rollout aborts and deletes its
// keys, and the other sites never see it; a good fragment goes through
// every wave and ends as the group fragment.
func TestRemoteConfigRollout(t *testing.T) {
	hub, kv := rcHub(t)
	base := put(t, kv, "group.north", "log_level: warn\n")
	var sites []*rcSite
	for _, name := range []string{"s1", "s2", "s3", "s4"} {
		sites = append(sites, startRCSite(t, t.TempDir(), fmt.Sprintf("site: %s\ngroups: [north]\nuplink:\n  hub_urls: [%s]\nremote_config: {enabled: true, gate: 2s}\n%s", name, leafURL(t, hub, "nats"), rcSensors)))
	}
	for _, s := range sites {
		s.waitReport(20*time.Second, fleetconfig.StateApplied, base)
	}
	nc := connect(t, hub.ClientURL())
	js, _ := jetstream.New(nc)
	reports := hubops.FleetReports(js, "edge")
	testkit.WaitFor(t, 10*time.Second, func() error {
		r, _ := reports(context.Background())
		if len(r) != 4 {
			return errors.New("still waiting for every site's report at the hub")
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out strings.Builder
	bad := &fleetconfig.Rollout{KV: kv, Group: "north", Data: []byte("sensors:\n  - {name: probe, driver: sim, fail_every: 1, interval: 50ms}\n"),
		Waves: []float64{0.25, 1}, AbortOn: 0.1, Reports: reports, Wait: 20 * time.Second, Poll: 100 * time.Millisecond, Out: &out}
	err := bad.Run(ctx)
	var ab *fleetconfig.ErrAborted
	if !errors.As(err, &ab) || ab.Wave != 1 || ab.Failed != 1 || !strings.Contains(err.Error(), "s1: rolled_back: health gate failed after 2s: sensor probe fails") {
		t.Fatalf("bad rollout: %v\n%s", err, out.String())
	}
	if e, err := kv.Get(ctx, "group.north"); err != nil || e.Revision() != base {
		t.Fatalf("group.north touched by an aborted rollout: %v", err)
	}
	latest, err := fleetconfig.Latest(ctx, kv)
	if err != nil {
		t.Fatal(err)
	}
	for k := range latest {
		if k == "rollout.north.s2" || k == "rollout.north.s3" || k == "rollout.north.s4" {
			t.Fatalf("a later wave got %s", k)
		}
	}
	if _, err := kv.Get(ctx, "rollout.north.s1"); !errors.Is(err, jetstream.ErrKeyNotFound) || latest["rollout.north.s1"] == 0 {
		t.Fatalf("rollout.north.s1 not deleted: %v", err)
	}
	sites[0].waitReport(20*time.Second, fleetconfig.StateApplied, latest["rollout.north.s1"])
	for _, s := range sites {
		if n := len(s.agent().Config().Sensors); n != 1 {
			t.Fatalf("%s runs %d sensors", s.agent().Config().Site, n)
		}
	}

	out.Reset()
	good := &fleetconfig.Rollout{KV: kv, Group: "north", Data: []byte("log_level: debug\n"),
		Waves: []float64{0.25, 0.5, 1}, AbortOn: 0.1, Reports: reports, Wait: 20 * time.Second, Poll: 100 * time.Millisecond, Out: &out}
	if err := good.Run(ctx); err != nil {
		t.Fatalf("good rollout: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "wave 3: 2 site(s): s3 s4") {
		t.Fatalf("waves:\n%s", out.String())
	}
	e, err := kv.Get(ctx, "group.north")
	if err != nil || string(e.Value()) != "log_level: debug\n" {
		t.Fatalf("group.north after the rollout: %v", err)
	}
	for _, s := range sites {
		s.waitReport(20*time.Second, fleetconfig.StateApplied, e.Revision())
		if lvl := s.agent().Config().LogLevel; lvl != "debug" {
			t.Fatalf("%s log_level %s", s.agent().Config().Site, lvl)
		}
	}
}

// TestRemoteConfigKill9Helper is the agent process TestRemoteConfigKill9
// kills; it only runs as that child.
func TestRemoteConfigKill9Helper(t *testing.T) {
	path := os.Getenv("EDGE_RC_KILL9_CONFIG")
	if path == "" {
		t.Skip("helper process for TestRemoteConfigKill9")
	}
	runRCSite(t, path)
	select {}
}

// kill -9 while a restart-requiring change is under its health gate: the
// next start is on the old config as a whole (not the new buffer limit
// with the old sensors, nor the reverse) and reports why.
func TestRemoteConfigKill9(t *testing.T) {
	hub, kv := rcHub(t)
	dir := t.TempDir()
	path := writeRCConfig(t, dir, fmt.Sprintf("uplink:\n  hub_urls: [%s]\nremote_config: {enabled: true, gate: 60s}\n%s", leafURL(t, hub, "nats"), rcSensors))
	cmd := exec.Command(os.Args[0], "-test.run=^TestRemoteConfigKill9Helper$", "-test.timeout=5m")
	cmd.Env = append(os.Environ(), "EDGE_RC_KILL9_CONFIG="+path)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	rev := put(t, kv, "site.s1", "buffer: {max_age: 1h}\nsensors:\n  - {name: probe, driver: sim, fail_every: 1, interval: 50ms}\n")
	testkit.WaitFor(t, 60*time.Second, func() error {
		st, err := fleetconfig.ReadState(dir)
		if !(err == nil && st.Trial != nil && st.Trial.Boots == 1 && st.Trial.Set.Rev == rev) {
			return errors.New("still waiting for the child restarted onto the change and gating it")
		}
		return nil
	})
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()

	s := runRCSite(t, path)
	cfg := s.agent().Config()
	if cfg.Buffer.MaxAge == time.Hour || len(cfg.Sensors) != 1 {
		t.Fatalf("after kill -9 the site runs max_age %s with %d sensors: not the old config", cfg.Buffer.MaxAge, len(cfg.Sensors))
	}
	r := s.report()
	if r.State != fleetconfig.StateRolledBack || r.DesiredRev != rev || !strings.Contains(r.Error, "stopped during the health gate") {
		t.Fatalf("report %+v", r)
	}
	// The refused set is not retried on the next start.
	time.Sleep(time.Second)
	if n := s.restartCount(); n != 0 || len(s.agent().Config().Sensors) != 1 {
		t.Fatalf("the rolled-back change was tried again (%d restarts)", n)
	}
}

// A hub without the bucket, a bucket deleted under a watching site and a
// hub without JetStream are reported in the site's report, never a crash,
// and the site keeps its applied config.
func TestRemoteConfigBucketMissing(t *testing.T) {
	old := remoteRecheck
	remoteRecheck = 500 * time.Millisecond
	t.Cleanup(func() { remoteRecheck = old })
	hub := testkit.RunServer(t, testkit.HubOpts(t))
	s := startRCSite(t, t.TempDir(), fmt.Sprintf("uplink:\n  hub_urls: [%s]\nremote_config: {enabled: true, gate: 5s}\n", leafURL(t, hub, "nats")))
	testkit.WaitFor(t, 20*time.Second, func() error {
		if !strings.Contains(s.report().Sync, "the hub has no EDGE_CONFIG bucket") {
			return errors.New("still waiting for the missing bucket reported")
		}
		return nil
	})
	js := jsConnect(t, hub.ClientURL())
	kv := configBucket(t, js)
	ctx := context.Background()
	rev := put(t, kv, "fleet", "log_level: debug\n")
	s.waitReport(20*time.Second, fleetconfig.StateApplied, rev)
	if err := js.DeleteKeyValue(ctx, fleetconfig.Bucket); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 20*time.Second, func() error {
		if !strings.Contains(s.report().Sync, "the hub has no EDGE_CONFIG bucket") {
			return errors.New("still waiting for the deleted bucket reported")
		}
		return nil
	})
	if r := s.report(); r.State != fleetconfig.StateApplied || s.agent().Config().LogLevel != "debug" {
		t.Fatalf("after the bucket went: %+v", r)
	}

	o := testkit.HubOpts(t)
	o.JetStream = false
	bare := testkit.RunServer(t, o)
	s2 := startRCSite(t, t.TempDir(), fmt.Sprintf("uplink:\n  hub_urls: [%s]\nremote_config: {enabled: true, gate: 5s}\n", leafURL(t, bare, "nats")))
	testkit.WaitFor(t, 30*time.Second, func() error {
		if !strings.Contains(s2.report().Sync, "hub bucket EDGE_CONFIG") {
			return errors.New("still waiting for a hub without JetStream reported")
		}
		return nil
	})
	t.Log(s2.report().Sync)
}

// A set rejected for the allow list applies after the local file allows
// the key and the agent restarts: the file stays the authority.
func TestRemoteConfigRejectedThenAllowed(t *testing.T) {
	hub, kv := rcHub(t)
	dir := t.TempDir()
	body := "uplink:\n  hub_urls: [%s]\nremote_config: {enabled: true, gate: 3s%s}\n"
	s := startRCSite(t, dir, fmt.Sprintf(body, leafURL(t, hub, "nats"), ""))
	rev := put(t, kv, "site.s1", "buffer: {sync: 1s}\n")
	if r := s.waitReport(20*time.Second, fleetconfig.StateRejected, rev); !strings.Contains(r.Error, "buffer.sync: not in the site's remote_config.allow") {
		t.Fatalf("report %+v", r)
	}
	s.stop()
	s2 := runRCSite(t, writeRCConfig(t, dir, fmt.Sprintf(body, leafURL(t, hub, "nats"), ", allow: [buffer.sync]")))
	s2.waitReport(30*time.Second, fleetconfig.StateApplied, rev)
	if got := s2.agent().Config().Buffer.Sync; got != "1s" {
		t.Fatalf("buffer.sync %q", got)
	}
}

// groups and remote_config are checked like every key: exit 78 material,
// with the key path.
func TestRemoteConfigKeys(t *testing.T) {
	for _, tc := range []struct{ body, key, msg string }{
		{"groups: [\"north pole\"]\n", "groups[0]", "not a group name"},
		{"remote_config: {allow: [site]}\n", "remote_config.allow[0]", "cannot be allowed"},
		{"remote_config: {allow: [remote_config.enabled]}\n", "remote_config.allow[0]", "cannot be allowed"},
		{"remote_config: {enabled: true, hub_domain: \"\"}\n", "remote_config.hub_domain", "required"},
		{"remote_config: {gate: 10ms}\n", "remote_config.gate", "too short"},
		{"remote_config: {enabeld: true}\n", "remote_config.enabeld", "unknown key"},
	} {
		_, err := ParseConfig("agent.yaml", []byte("site: s1\nstate_dir: /var/lib/edge-agent\n"+tc.body))
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Key != tc.key || !strings.Contains(ce.Msg, tc.msg) {
			t.Errorf("%q: %v, want key %s and %q", tc.body, err, tc.key, tc.msg)
		}
	}
}

// settle returns only once changes stop coming, so fragments written
// together apply together; it gives up after its bound.
func TestRemoteConfigSettle(t *testing.T) {
	ch := make(chan struct{})
	var last atomic.Int64
	go func() {
		for range 5 {
			time.Sleep(50 * time.Millisecond)
			ch <- struct{}{}
			last.Store(time.Now().UnixNano())
		}
	}()
	settle(context.Background(), ch)
	if l := last.Load(); l == 0 || time.Since(time.Unix(0, l)) < 250*time.Millisecond {
		t.Fatalf("settle returned %s after the last change, want at least its quiet time", time.Since(time.Unix(0, l)))
	}
	start := time.Now()
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case ch <- struct{}{}:
			case <-stop:
				return
			}
		}
	}()
	settle(context.Background(), ch)
	close(stop)
	if d := time.Since(start); d < 3*time.Second || d > 10*time.Second {
		t.Fatalf("settle under a stream of changes took %s, want its 3s bound", d)
	}
}

// The local file stays the authority when it changes under applied
// fragments: a SIGHUP-style reload refuses the combination, and a start
// runs the file alone and reports the fragments rejected, with why.
func TestRemoteConfigLocalEditConflict(t *testing.T) {
	hub, kv := rcHub(t)
	dir := t.TempDir()
	body := "uplink:\n  hub_urls: [%s]\nremote_config: {enabled: true, gate: 3s}\n%s"
	s := startRCSite(t, dir, fmt.Sprintf(body, leafURL(t, hub, "nats"), rcSensors))
	rev := put(t, kv, "site.s1", "sensors:\n  - {name: room, interval: 75ms}\n")
	s.waitReport(20*time.Second, fleetconfig.StateApplied, rev)
	// The technician removes the sensor the fragment patches.
	path := writeRCConfig(t, dir, fmt.Sprintf(body, leafURL(t, hub, "nats"), ""))
	if _, err := LoadEffectiveConfig(path); err == nil || !strings.Contains(err.Error(), "sensors[0].driver") {
		t.Fatalf("reload of a conflicting local edit: %v", err)
	}
	s.stop()
	s2 := runRCSite(t, path)
	if n := len(s2.agent().Config().Sensors); n != 0 {
		t.Fatalf("running %d sensors, want the local file's none", n)
	}
	if r := s2.report(); r.State != fleetconfig.StateRejected || r.AppliedRev != 0 || !strings.Contains(r.Error, "no longer valid with the local file") || !strings.Contains(r.Error, "fragment site.s1@") {
		t.Fatalf("report %+v", r)
	}
}
