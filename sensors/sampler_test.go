package sensors

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/edge-agent/edge-agent/internal/testkit"
)

// fakeDev is a scriptable driver: tests set its behaviour while it runs.
type fakeDev struct {
	mu       sync.Mutex
	openErr  error // returned by New while set
	readErr  error // returned by Read while set
	hang     chan struct{}
	values   []float64 // consumed one per read; the last one repeats
	onRead   func()
	reads    int
	opens    int
	closes   int
	readTime []time.Time
}

var (
	fakesMu sync.Mutex
	fakes   = map[string]*fakeDev{}
)

type fakeOptions struct {
	Key string `yaml:"key"`
}

func init() {
	Register(Registration{
		Name:    "test-fake",
		Options: func() any { return &fakeOptions{} },
		New: func(c Config, o any, _ Env) (Driver, error) {
			fakesMu.Lock()
			f := fakes[o.(*fakeOptions).Key]
			fakesMu.Unlock()
			f.mu.Lock()
			defer f.mu.Unlock()
			if f.openErr != nil {
				return nil, f.openErr
			}
			f.opens++
			return fakeDrv{f}, nil
		},
	})
}

func newFake(t *testing.T) (string, *fakeDev) {
	f := &fakeDev{values: []float64{1}}
	fakesMu.Lock()
	defer fakesMu.Unlock()
	fakes[t.Name()] = f
	return t.Name(), f
}

type fakeDrv struct{ f *fakeDev }

func (d fakeDrv) Read(ctx context.Context) (map[string]Value, error) {
	f := d.f
	f.mu.Lock()
	f.readTime = append(f.readTime, time.Now())
	hang, err, on := f.hang, f.readErr, f.onRead
	v := f.values[0]
	if len(f.values) > 1 {
		f.values = f.values[1:]
	}
	f.mu.Unlock()
	if hang != nil {
		<-hang // ignores ctx on purpose: the sampler must not depend on it
	}
	if on != nil {
		on()
	}
	f.mu.Lock()
	f.reads++
	f.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return map[string]Value{"x": {V: v, Unit: "u"}}, nil
}

func (d fakeDrv) Close() error {
	d.f.mu.Lock()
	d.f.closes++
	d.f.mu.Unlock()
	return nil
}

func (f *fakeDev) set(fn func(f *fakeDev)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func (f *fakeDev) get(fn func(f *fakeDev) int) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return fn(f)
}

// memPub records accepted messages and fails while down.
type memPub struct {
	mu   sync.Mutex
	down bool
	msgs map[string][][]byte
}

func (p *memPub) Publish(ctx context.Context, subject string, data []byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.down {
		return errors.New("nats: insufficient resources (disk full)")
	}
	if p.msgs == nil {
		p.msgs = map[string][][]byte{}
	}
	p.msgs[subject] = append(p.msgs[subject], data)
	return nil
}

func (p *memPub) setDown(v bool) { p.mu.Lock(); p.down = v; p.mu.Unlock() }

func (p *memPub) count(subject string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.msgs[subject])
}

func (p *memPub) readings(t *testing.T, subject string) []Reading {
	t.Helper()
	return decodeAll[Reading](t, p, subject)
}

func (p *memPub) alerts(t *testing.T, subject string) []Alert {
	t.Helper()
	return decodeAll[Alert](t, p, subject)
}

// decodeAll decodes each message p holds on subject as a T.
func decodeAll[T any](t *testing.T, p *memPub, subject string) []T {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []T
	for _, d := range p.msgs[subject] {
		var v T
		if err := json.Unmarshal(d, &v); err != nil {
			t.Fatal(err)
		}
		out = append(out, v)
	}
	return out
}

func fakeCfg(name, key string, iv, timeout time.Duration) Config {
	return Config{Name: name, Driver: "test-fake", Interval: iv, Timeout: timeout, Options: &fakeOptions{Key: key}}
}

// runSampler starts s and stops it (waiting for Run) at cleanup.
func runSampler(t *testing.T, s *Sampler) func() {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = s.Run(ctx); close(done) }()
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return stop
}

func health(s *Sampler, name string) Health {
	for _, h := range s.Health() {
		if h.Name == name {
			return h
		}
	}
	return Health{}
}

func TestFlakySensorDoesNotDelayOthers(t *testing.T) {
	key, f := newFake(t)
	f.readErr = errors.New("i2c: remote I/O error (NACK)")
	pub := &memPub{}
	cfgs := []Config{
		{Name: "good", Driver: "sim", Interval: 20 * time.Millisecond, Options: &SimOptions{Seed: 1, Base: map[string]float64{"t": 4}, Unit: "C"}},
		fakeCfg("flaky", key, 20*time.Millisecond, 20*time.Millisecond),
	}
	s, err := NewSampler(cfgs, Options{Publisher: pub})
	if err != nil {
		t.Fatal(err)
	}
	runSampler(t, s)

	testkit.WaitFor(t, 10*time.Second, func() error {
		if health(s, "flaky").Errors < 2 {
			return errors.New("still waiting for flaky to fail twice")
		}
		return nil
	})
	if h := health(s, "flaky"); h.OK || !strings.Contains(h.LastError, "NACK") {
		t.Fatalf("flaky health %+v", h)
	}
	// Failures closed the driver each time, so every attempt reopened it.
	if opens, closes := f.get(func(f *fakeDev) int { return f.opens }), f.get(func(f *fakeDev) int { return f.closes }); opens < 2 || closes < 2 {
		t.Fatalf("opens %d closes %d: a failed read must reopen the driver", opens, closes)
	}

	// Now the driver hangs and ignores its context: reads are abandoned.
	hang := make(chan struct{})
	f.set(func(f *fakeDev) { f.readErr, f.hang = nil, hang })
	testkit.WaitFor(t, 10*time.Second, func() error {
		if health(s, "flaky").Timeouts < 1 {
			return errors.New("still waiting for a timed-out read")
		}
		return nil
	})
	before := pub.count("telemetry.good")
	testkit.WaitFor(t, 10*time.Second, func() error {
		if pub.count("telemetry.good") < before+10 {
			return errors.New("still waiting for good to keep publishing while flaky hangs")
		}
		return nil
	})
	if h := health(s, "flaky"); h.OK || !strings.Contains(h.LastError, "hung") && !strings.Contains(h.LastError, "timed out") {
		t.Fatalf("hung sensor health %+v", h)
	}
	if h := health(s, "good"); !h.OK || h.Errors != 0 {
		t.Fatalf("good sensor affected: %+v", h)
	}

	// The hung read returns: the driver is reopened and the sensor recovers.
	f.set(func(f *fakeDev) { f.hang = nil })
	close(hang)
	testkit.WaitFor(t, 20*time.Second, func() error {
		h := health(s, "flaky")
		if !(h.OK && h.Published > 0) {
			return errors.New("still waiting for flaky to recover")
		}
		return nil
	})
	if h := health(s, "flaky"); h.LastError != "" || h.NextRead.IsZero() {
		t.Fatalf("recovered health %+v", h)
	}
}

func TestOpenErrorShowsInStatusAndRecovers(t *testing.T) {
	key, f := newFake(t)
	f.openErr = errors.New("open /dev/i2c-1: permission denied: add the agent's user to group i2c")
	var obsMu sync.Mutex
	var observed []Health
	s, err := NewSampler([]Config{fakeCfg("probe", key, 10*time.Millisecond, 0)}, Options{
		Publisher: &memPub{},
		Observer:  func(h Health) { obsMu.Lock(); observed = append(observed, h); obsMu.Unlock() },
	})
	if err != nil {
		t.Fatalf("a sensor that cannot open must not fail the sampler: %v", err)
	}
	runSampler(t, s)
	testkit.WaitFor(t, 10*time.Second, func() error {
		if !strings.Contains(health(s, "probe").LastError, "group i2c") {
			return errors.New("still waiting for open error in health")
		}
		return nil
	})
	// Backoff: the next read is scheduled more than one interval ahead.
	testkit.WaitFor(t, 10*time.Second, func() error {
		h := health(s, "probe")
		if !(h.Errors >= 3 && h.NextRead.Sub(time.Now()) > 10*time.Millisecond) {
			return errors.New("still waiting for backoff beyond one interval")
		}
		return nil
	})
	f.set(func(f *fakeDev) { f.openErr = nil })
	testkit.WaitFor(t, 10*time.Second, func() error {
		if !health(s, "probe").OK {
			return errors.New("still waiting for recovery after the bus is enabled")
		}
		return nil
	})
	// The observer runs after the health update, so it may trail it by one read.
	testkit.WaitFor(t, 10*time.Second, func() error {
		obsMu.Lock()
		defer obsMu.Unlock()
		if !(len(observed) > 0 && observed[len(observed)-1].OK) {
			return errors.New("still waiting for the observer to see the recovery")
		}
		return nil
	})
	obsMu.Lock()
	defer obsMu.Unlock()
	if len(observed) < 2 || observed[0].LastError == "" {
		t.Fatalf("observer saw %d updates; first %+v", len(observed), observed[0])
	}
}

func TestPublishOutageLosesNothing(t *testing.T) {
	pub := &memPub{}
	s, err := NewSampler([]Config{{Name: "room", Driver: "sim", Interval: 10 * time.Millisecond}}, Options{Publisher: pub, QueueSize: 1000})
	if err != nil {
		t.Fatal(err)
	}
	stop := runSampler(t, s)
	testkit.WaitFor(t, 10*time.Second, func() error {
		if pub.count("telemetry.room") < 3 {
			return errors.New("still waiting for first readings")
		}
		return nil
	})
	pub.setDown(true)
	testkit.WaitFor(t, 10*time.Second, func() error {
		if s.out.len() < 30 {
			return errors.New("still waiting for readings to queue during the outage")
		}
		return nil
	})
	if h := health(s, "room"); h.OK || !strings.Contains(h.LastError, "disk full") || !strings.Contains(h.LastError, "kept in memory") {
		t.Fatalf("health during outage %+v", h)
	}
	pub.setDown(false)
	testkit.WaitFor(t, 20*time.Second, func() error {
		if !(s.out.len() == 0 && health(s, "room").OK) {
			return errors.New("still waiting for queue to drain")
		}
		return nil
	})
	stop()
	rs := pub.readings(t, "telemetry.room")
	for i, r := range rs {
		if r.Seq != uint64(i+1) {
			t.Fatalf("reading %d has seq %d: lost or reordered across the outage", i, r.Seq)
		}
	}
	if h := health(s, "room"); h.Dropped != 0 || h.Published != uint64(len(rs)) {
		t.Fatalf("dropped %d published %d, have %d", h.Dropped, h.Published, len(rs))
	}
}

func TestQueueOverflowDropsOldestAndCounts(t *testing.T) {
	pub := &memPub{down: true}
	s, err := NewSampler([]Config{{Name: "room", Driver: "sim", Interval: 10 * time.Millisecond}}, Options{Publisher: pub, QueueSize: 5})
	if err != nil {
		t.Fatal(err)
	}
	stop := runSampler(t, s)
	testkit.WaitFor(t, 10*time.Second, func() error {
		if health(s, "room").Dropped < 10 {
			return errors.New("still waiting for drops")
		}
		return nil
	})
	pub.setDown(false)
	testkit.WaitFor(t, 10*time.Second, func() error {
		if pub.count("telemetry.room") < 10 {
			return errors.New("still waiting for recovery")
		}
		return nil
	})
	stop()
	rs := pub.readings(t, "telemetry.room")
	h := health(s, "room")
	last := rs[len(rs)-1].Seq
	if uint64(len(rs))+h.Dropped != last {
		t.Fatalf("published %d + dropped %d != last seq %d: a reading vanished uncounted", len(rs), h.Dropped, last)
	}
	for i := 1; i < len(rs); i++ {
		if rs[i].Seq <= rs[i-1].Seq {
			t.Fatalf("out of order: %d after %d", rs[i].Seq, rs[i-1].Seq)
		}
	}
}

// TestScheduleDoesNotDrift runs in a synctest bubble: its clock moves
// only when every goroutine waits, so reads land on exact instants
// whatever the machine's speed.
func TestScheduleDoesNotDrift(t *testing.T) { synctest.Test(t, testScheduleDoesNotDrift) }

func testScheduleDoesNotDrift(t *testing.T) {
	const iv = time.Second
	key, f := newFake(t)
	// Every read takes 0.6 interval: "sleep interval after read" would
	// drift to 1.6 s per reading.
	f.onRead = func() { time.Sleep(iv * 6 / 10) }
	pub := &memPub{}
	s, err := NewSampler([]Config{fakeCfg("slow", key, iv, iv)}, Options{Publisher: pub})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	stop := runSampler(t, s)
	const ticks = 100
	// Half an interval past the last tick: read ticks has started.
	time.Sleep(ticks*iv + iv/2)
	stop()
	// The read in flight at the stop ends before the bubble may.
	time.Sleep(iv)
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.readTime) < ticks+1 {
		t.Fatalf("%d reads by +%s, want at least %d", len(f.readTime), ticks*iv+iv/2, ticks+1)
	}
	for k, at := range f.readTime[:ticks+1] {
		if want := start.Add(time.Duration(k) * iv); !at.Equal(want) {
			t.Fatalf("read %d at +%s, want +%s: the schedule drifted", k, at.Sub(start), want.Sub(start))
		}
	}
}

func TestScheduleSkipsTicksAfterSlowReadAndBackoff(t *testing.T) {
	start := time.Unix(0, 0)
	iv := 10 * time.Second
	cases := []struct {
		t    time.Duration
		want time.Duration
	}{{0, 0}, {1, 10 * time.Second}, {10 * time.Second, 10 * time.Second}, {25 * time.Second, 30 * time.Second}}
	for _, c := range cases {
		if got := tickAtOrAfter(start, iv, start.Add(c.t)).Sub(start); got != c.want {
			t.Errorf("tickAtOrAfter(+%s) = +%s, want +%s", c.t, got, c.want)
		}
	}
	var got []int64
	for n := 1; n <= 12; n++ {
		got = append(got, int64(retryDelay(iv, n)/iv))
	}
	if fmt.Sprint(got) != "[1 2 4 8 10 10 10 10 10 10 10 10]" {
		t.Fatalf("backoff in intervals: %v", got)
	}
}

func TestThresholdAlertsWithHysteresis(t *testing.T) {
	key, f := newFake(t)
	f.values = []float64{5, 8.5, 9, 8.5, 7.9, 7.5, 1, 2.5, 3.5}
	above, below := 8.0, 2.0
	c := fakeCfg("cold", key, time.Second, 0)
	c.AlertAbove, c.AlertBelow, c.Hysteresis = &above, &below, 0.5
	pub := &memPub{}
	s, err := NewSampler([]Config{c}, Options{Publisher: pub})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	n := len(f.values)
	for range n {
		if _, err := s.sample(ctx, s.sensors[0]); err != nil {
			t.Fatal(err)
		}
		for {
			if _, ok := s.publishHead(ctx); !ok {
				break
			}
		}
	}
	var got []string
	for _, a := range pub.alerts(t, "alerts.cold") {
		got = append(got, fmt.Sprintf("%s/%s@%g#%d", a.State, a.Kind, a.Value.V, a.Seq))
		if a.Metric != "x" || a.Sensor != "cold" || a.Value.Unit != "u" {
			t.Fatalf("alert %+v", a)
		}
	}
	// 8.5 raises; 9, 8.5 and 7.9 stay raised (not back below 8 - 0.5);
	// 7.5 clears; 1 raises below; 2.5 clears (back at 2 + 0.5).
	want := "raised/above@8.5#2 cleared/above@7.5#6 raised/below@1#7 cleared/below@2.5#8"
	if strings.Join(got, " ") != want {
		t.Fatalf("alerts:\n got %s\nwant %s", strings.Join(got, " "), want)
	}
	if got := pub.count("telemetry.cold"); got != n {
		t.Fatalf("%d readings published, want %d", got, n)
	}
}

func TestReadingSchema(t *testing.T) {
	pub := &memPub{}
	s, err := NewSampler([]Config{{Name: "room", Driver: "sim", Interval: time.Second}}, Options{Publisher: pub})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.sample(context.Background(), s.sensors[0]); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.publishHead(context.Background()); !ok {
		t.Fatal("nothing queued")
	}
	var m map[string]any
	if err := json.Unmarshal(pub.msgs["telemetry.room"][0], &m); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if got := strings.Join(keys, ","); got != "boot_id,clock_synced,driver,mono_ns,quality,sensor,seq,ts,values" {
		t.Fatalf("reading keys %s", got)
	}
	r := pub.readings(t, "telemetry.room")[0]
	if r.Sensor != "room" || r.Driver != "sim" || r.Seq != 1 || r.Quality != QualityOK || r.Mono <= 0 || r.Values["temperature"].Unit != "C" {
		t.Fatalf("reading %+v", r)
	}
	if r.BootID != bootID(bootIDPath) || len(r.BootID) != 36 {
		t.Fatalf("boot id %q", r.BootID)
	}
	if time.Since(r.Time) > time.Minute {
		t.Fatalf("ts %s", r.Time)
	}
}
