package buffer

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/edge-agent/edge-agent/internal/testkit"
)

// fakeClock is a Clock the test moves: advance is time passing (both
// clocks), jump steps only the wall clock, as settimeofday or NTP would.
type fakeClock struct {
	mu     sync.Mutex
	wall   time.Time
	mono   time.Duration
	synced bool
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.wall
}

func (c *fakeClock) Mono() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mono
}

func (c *fakeClock) Synced() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.synced
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.wall, c.mono = c.wall.Add(d), c.mono+d
}

func (c *fakeClock) jump(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.wall = c.wall.Add(d)
}

func (c *fakeClock) setWall(t time.Time, synced bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.wall, c.synced = t, synced
}

const testMaxAge = 10 * time.Minute

var testNow = time.Date(2026, 2, 3, 4, 5, 6, 0, time.UTC)

// ageRig is one store (a real JetStream server and a real state.db in a
// temporary directory) and the agent runs on it; each run has its own
// process clock, as a restart would.
type ageRig struct {
	t    *testing.T
	dir  string
	c    Config // the agent streams' config (start creates them)
	js   jetstream.JetStream
	st   *State
	ager *Ager
	clk  *fakeClock
	logs *testkit.SyncBuffer
}

func newAgeRig(t *testing.T) *ageRig {
	dir := t.TempDir()
	c := testConfig("always", 64<<20)
	c.MaxAge = testMaxAge
	// Room for a stream recreated while the old one's reservation lingers.
	_, js := jsServer(t, filepath.Join(dir, "js"), testConfig("always", 256<<20))
	return &ageRig{t: t, dir: dir, c: c, js: js, logs: &testkit.SyncBuffer{}}
}

func (r *ageRig) logText() string { return r.logs.String() }

// start opens state.db, opens the streams as an agent start does and
// makes an Ager on a fresh process clock reading wall (mono starts at an
// arbitrary origin).
func (r *ageRig) start(wall time.Time, synced bool) {
	r.t.Helper()
	log := slog.New(slog.NewTextHandler(r.logs, nil))
	st, err := OpenState(filepath.Join(r.dir, "state.db"), log)
	mustOK(r.t, err, "open state")
	_, err = OpenStreams(context.Background(), r.js, st, r.c, time.Time{}, log)
	mustOK(r.t, err, "open streams")
	c := DefaultConfig()
	c.MaxAge = testMaxAge
	r.st, r.clk = st, &fakeClock{wall: wall, mono: 777 * time.Hour, synced: synced}
	r.ager, err = NewAger(r.js, st, c, AgerOptions{Clock: r.clk, Log: log})
	mustOK(r.t, err, "new ager")
}

// stop ends the run the way a kill does (no stop checkpoint) and commits
// what the state flusher would have.
func (r *ageRig) stop() {
	r.t.Helper()
	mustOK(r.t, r.st.Close(), "close state")
}

func (r *ageRig) check() {
	r.t.Helper()
	mustOK(r.t, r.ager.Check(context.Background()), "age check")
}

func (r *ageRig) publish(n int) { publishN(r.t, r.js, "telemetry.t", n, 32) }

// after advances the clock by d, runs a check and wants the stream as
// want does.
func (r *ageRig) after(d time.Duration, msgs, expired uint64, when string) {
	r.t.Helper()
	r.clk.advance(d)
	r.check()
	r.want(msgs, expired, when)
}

func (r *ageRig) want(msgs, expired uint64, when string) {
	r.t.Helper()
	st := streamState(r.t, r.js, StreamTelemetry)
	got := r.ager.Status().Expired[StreamTelemetry]
	if st.Msgs != msgs || got != expired {
		r.t.Fatalf("%s: TELEMETRY holds %d messages (seq %d..%d) and %d expired by age; want %d held, %d expired\nlog:\n%s",
			when, st.Msgs, st.FirstSeq, st.LastSeq, got, msgs, expired, r.logText())
	}
}

// TestAgerExpiresOnAgentTimeOnly: the same schedule of publishes and ticks
// gives the same purges whatever the wall clock does meanwhile, and the
// purges are exact: what was stored before a checkpoint goes once that
// checkpoint is max_age of agent time old, nothing stored after it.
func TestAgerExpiresOnAgentTimeOnly(t *testing.T) {
	jumps := []struct {
		name string
		jump time.Duration
	}{
		{"no jump", 0},
		{"+1h", time.Hour},
		{"-1h", -time.Hour},
		{"+30 days", 30 * 24 * time.Hour},
		{"-30 days", -30 * 24 * time.Hour},
	}
	for _, tc := range jumps {
		t.Run(tc.name, func(t *testing.T) {
			r := newAgeRig(t)
			r.start(testNow, true)
			r.publish(10)
			r.check() // checkpoint at agent time 0: seq 10
			r.clk.advance(5 * time.Minute)
			r.publish(7)
			r.check() // 5m: seq 17
			r.clk.jump(tc.jump)
			r.after(time.Minute, 17, 0, "right after the jump")
			if tc.jump != 0 {
				j := r.ager.Status().Jump
				if j == nil || j.Size != tc.jump || r.ager.Status().Jumps != 1 {
					t.Fatalf("jump of %s not reported: %+v", tc.jump, r.ager.Status())
				}
				if !strings.Contains(r.logText(), "wall clock jumped") {
					t.Fatalf("jump not logged:\n%s", r.logText())
				}
			} else if r.ager.Status().Jump != nil {
				t.Fatalf("a jump reported without one: %+v", r.ager.Status().Jump)
			}
			r.clk.advance(3*time.Minute + 59*time.Second) // agent time 9m59s
			r.check()
			r.want(17, 0, "just before max_age of agent time")
			r.clk.advance(time.Second) // 10m: the first checkpoint is max_age old
			r.check()
			r.want(7, 10, "at max_age of the first checkpoint")
			r.clk.advance(5 * time.Minute) // 15m: the second one too
			r.check()
			r.want(0, 17, "at max_age of the second checkpoint")
			// Left: the one at 5m that did the last purge and the four after.
			if s := r.ager.Status(); s.LastPurge.IsZero() || s.Checkpoints != 5 {
				t.Fatalf("status after purges: %+v (checkpoints older than the last purge's must be pruned)", s)
			}
			// Pruning reached the disk, and the last checkpoint is there.
			n := r.ager.Status().Checkpoints
			r.stop()
			ro, err := OpenStateReadOnly(filepath.Join(r.dir, "state.db"))
			mustOK(t, err, "reopen read-only")
			defer ro.Close()
			if got := ro.ageCheckpointCount(); got != n {
				t.Fatalf("state.db holds %d age checkpoints, memory had %d", got, n)
			}
		})
	}
}

// TestAgerBootAt1970: a gateway without RTC starts at 1970, stores
// readings, and NTP steps the clock 56 years forward: nothing expires; and
// since the last checkpoint before a restart was taken unsynchronised,
// the downtime is not counted either.
func TestAgerBootAt1970(t *testing.T) {
	r := newAgeRig(t)
	r.start(time.Unix(0, 0).UTC(), false)
	r.publish(20)
	r.check()
	r.clk.advance(2 * time.Minute)
	r.check()
	r.clk.setWall(testNow, true) // NTP steps it and reports synchronised
	r.after(time.Minute, 20, 0, "after the step to now")
	if j := r.ager.Status().Jump; j == nil || j.Size < 50*365*24*time.Hour {
		t.Fatalf("the 1970 -> now step was not seen: %+v", j)
	}
	// A restart an hour later, with a synced clock: the last checkpoint
	// was taken after the step, synced, so this downtime is real and
	// counts (agent time 3m + 1h > max_age): the 20 readings go.
	r.stop()
	r.start(testNow.Add(time.Minute+time.Hour), true)
	r.check()
	r.want(0, 20, "after a synced downtime of an hour")
}

// TestAgerDowntime: the time the agent was down ages readings only when the
// clock was synchronised at the last checkpoint and is when counted.
func TestAgerDowntime(t *testing.T) {
	stored := func(t *testing.T, synced bool) *ageRig {
		r := newAgeRig(t)
		r.start(testNow, synced)
		r.publish(10)
		r.check() // the last checkpoint before a kill: agent time 0
		r.stop()
		return r
	}
	t.Run("synced both times: counted", func(t *testing.T) {
		r := stored(t, true)
		r.start(testNow.Add(20*time.Minute), true)
		r.check()
		r.want(0, 10, "after 20m down")
		if d := r.ager.Status().Downtime; !strings.Contains(d, "20m0s before this start counted") {
			t.Fatalf("downtime note %q", d)
		}
	})
	t.Run("synced later: counted from the start, not from the sync", func(t *testing.T) {
		r := stored(t, true)
		r.start(testNow.Add(-48*time.Hour), false) // RTC far behind, not synced
		r.check()
		r.want(10, 0, "unsynced after the restart")
		if d := r.ager.Status().Downtime; !strings.Contains(d, "waiting") {
			t.Fatalf("downtime note %q", d)
		}
		// NTP syncs two minutes after the start: the start was at
		// testNow+6m, so the downtime is 6m, plus 2m run = 8m < 10m.
		r.clk.advance(2 * time.Minute)
		r.clk.setWall(testNow.Add(8*time.Minute), true)
		r.check()
		r.want(10, 0, "8m of agent time after the sync")
		if got := r.ager.AgentTime(); got != 8*time.Minute {
			t.Fatalf("agent time %s, want 8m (6m down + 2m running)", got)
		}
		r.after(2*time.Minute, 0, 10, "10m of agent time")
	})
	t.Run("unsynced at the last checkpoint: never counted", func(t *testing.T) {
		r := stored(t, false)
		r.start(testNow.Add(24*time.Hour), true)
		r.check()
		r.after(9*time.Minute, 10, 0, "a day down, 9m running")
		if d := r.ager.Status().Downtime; !strings.Contains(d, "not counted") {
			t.Fatalf("downtime note %q", d)
		}
		r.after(time.Minute, 0, 10, "10m running")
	})
	t.Run("clock went back while down: nothing counted", func(t *testing.T) {
		r := stored(t, true)
		r.start(testNow.Add(-time.Hour), true)
		r.check()
		r.after(9*time.Minute, 10, 0, "9m running after a restart an hour 'earlier'")
	})
}

// TestAgerStateDBLost: without checkpoints (state.db corrupt and moved
// aside) the stored readings start ageing at the restart, however old the
// wall clock says they are.
func TestAgerStateDBLost(t *testing.T) {
	r := newAgeRig(t)
	r.start(testNow, true)
	r.publish(10)
	r.check()
	r.clk.advance(9 * time.Minute)
	r.check()
	r.stop()
	path := filepath.Join(r.dir, "state.db")
	mustOK(t, os.WriteFile(path, bytes.Repeat([]byte("garbage!"), 2048), 0o640), "corrupt state.db")
	r.start(testNow.Add(time.Hour), true) // an hour later by a synced clock
	if !strings.Contains(r.logText(), "moved aside") {
		t.Fatalf("state.db was not treated as corrupt:\n%s", r.logText())
	}
	r.check()
	r.after(9*time.Minute, 10, 0, "9m after the restart with a fresh state.db")
	r.after(time.Minute, 0, 10, "10m after the restart")
}

// TestAgerRecreatedStream: checkpoints of a stream that was recreated name
// sequences of the old stream; they must not purge the new one's messages,
// whether the start recreates it or a local admin replaced it while the
// agent was stopped, so that it already holds readings at the start.
func TestAgerRecreatedStream(t *testing.T) {
	for _, tc := range []struct {
		name         string
		whileStopped bool // recreated and filled before the start
	}{{"by the start", false}, {"while stopped", true}} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			r := newAgeRig(t)
			r.start(testNow, true)
			r.publish(30)
			r.check() // checkpoint at seq 30
			r.stop()
			mustOK(t, r.js.DeleteStream(ctx, StreamTelemetry), "delete")
			if tc.whileStopped {
				mustOK(t, EnsureStreams(ctx, r.js, r.c), "recreate")
				r.publish(40)
			}
			// 11m down with a synced clock: the old checkpoint is max_age
			// old at once, and the new stream's seqs 1..40 cover its seq 30.
			r.start(testNow.Add(11*time.Minute), true)
			if !tc.whileStopped {
				r.publish(40)
			}
			r.check()
			r.want(40, 0, "new stream, right after the restart")
			r.after(9*time.Minute, 40, 0, "new stream, 9m running")
			r.after(time.Minute, 0, 40, "new stream, 10m running")
		})
	}
}

func TestNewAgerNeedsAnAgeLimit(t *testing.T) {
	st, err := OpenState(filepath.Join(t.TempDir(), "state.db"), nil)
	mustOK(t, err)
	defer st.Close()
	c := DefaultConfig()
	c.MaxAge = 0
	if _, err := NewAger(nil, st, c, AgerOptions{Clock: &fakeClock{}}); err == nil || !strings.Contains(err.Error(), "max_age is 0") {
		t.Fatalf("want a refusal naming max_age, got %v", err)
	}
}

func TestAgeTick(t *testing.T) {
	for _, tc := range []struct{ maxAge, want time.Duration }{
		{time.Minute, time.Minute},
		{720 * time.Hour, 43*time.Minute + 12*time.Second},
		{8760 * time.Hour, time.Hour},
	} {
		if got := AgeTick(tc.maxAge); got != tc.want {
			t.Errorf("AgeTick(%s) = %s, want %s", tc.maxAge, got, tc.want)
		}
	}
}

// TestReconcileStreamsDropsJetStreamMaxAge: a stream an older agent made
// with a JetStream max_age gets 0 in place, data kept, and the log says so.
func TestReconcileStreamsDropsJetStreamMaxAge(t *testing.T) {
	ctx := context.Background()
	c := testConfig("always", 64<<20)
	_, js := jsServer(t, t.TempDir(), c)
	for _, sc := range StreamConfigs(c) {
		sc.MaxAge = 720 * time.Hour // what older versions created
		_, err := js.CreateStream(ctx, sc)
		mustOK(t, err, "precreate ", sc.Name)
	}
	publishN(t, js, "telemetry.t", 12, 16)
	var logs bytes.Buffer
	mustOK(t, ReconcileStreams(ctx, js, c, slog.New(slog.NewTextHandler(&logs, nil))), "reconcile")
	for _, name := range Lanes {
		s, err := js.Stream(ctx, name)
		mustOK(t, err, name)
		if got := s.CachedInfo().Config.MaxAge; got != 0 {
			t.Fatalf("%s MaxAge %s after reconcile, want 0", name, got)
		}
		if !strings.Contains(logs.String(), "stream="+name) || !strings.Contains(logs.String(), "jetstream_max_age_was=720h0m0s") {
			t.Fatalf("no log line for %s:\n%s", name, logs.String())
		}
	}
	if st := streamState(t, js, StreamTelemetry); st.Msgs != 12 {
		t.Fatalf("reconcile lost data: %d msgs", st.Msgs)
	}
}

// TestAgerRun: Run checks at start, sees a jump between ticks, and leaves
// a checkpoint when stopped.
func TestAgerRun(t *testing.T) {
	r := newAgeRig(t)
	r.start(testNow, true)
	c := DefaultConfig()
	c.MaxAge = testMaxAge
	var err error
	r.ager, err = NewAger(r.js, r.st, c, AgerOptions{Clock: r.clk, Watch: 10 * time.Millisecond, Tick: time.Hour})
	mustOK(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.ager.Run(ctx) }()
	testkit.WaitFor(t, 10*time.Second, func() error {
		if r.ager.Status().Checkpoints != 1 {
			return errors.New("still waiting for the first checkpoint")
		}
		return nil
	})
	r.clk.jump(-time.Hour)
	testkit.WaitFor(t, 10*time.Second, func() error {
		if r.ager.Status().Jump == nil {
			return errors.New("still waiting for the jump seen between ticks")
		}
		return nil
	})
	cancel()
	mustOK(t, <-done, "run")
	if n := r.ager.Status().Checkpoints; n != 2 {
		t.Fatalf("%d checkpoints after a stop, want 2 (start and stop)", n)
	}
	r.stop()
}
