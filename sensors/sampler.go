package sensors

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/edge-agent/edge-agent/internal/retry"
)

// Publisher is how readings leave the sampler: a JetStream publish that
// returns only once the local stream has acknowledged (and, with
// buffer.sync=always, fsynced) the message.
type Publisher interface {
	Publish(ctx context.Context, subject string, data []byte) error
}

// Health is what status shows for one sensor.
type Health struct {
	Name       string           `json:"name"`
	Driver     string           `json:"driver"`
	OK         bool             `json:"ok"`
	LastValues map[string]Value `json:"last_values,omitempty"`
	LastRead   time.Time        `json:"last_read,omitzero"`
	LastError  string           `json:"last_error,omitempty"`
	Errors     uint64           `json:"errors"`
	// Timeouts counts reads abandoned after the sensor's timeout.
	Timeouts  uint64 `json:"timeouts"`
	Published uint64 `json:"published"`
	// Dropped counts readings and alerts lost because the local publish
	// failed for longer than the in-memory queue could cover.
	Dropped  uint64 `json:"dropped"`
	Alerting bool   `json:"alerting,omitempty"`
	// NextRead is when the loop reads again; far ahead while backing off.
	NextRead time.Time `json:"next_read,omitzero"`
	// Events are what the driver saw on its bus since start, read or not
	// (modbus: timeouts, crc_errors, exceptions, io, retries).
	Events map[string]uint64 `json:"events,omitempty"`
	// Writes and WriteErrors count local-control writes (Sampler.Write).
	Writes      uint64 `json:"writes,omitempty"`
	WriteErrors uint64 `json:"write_errors,omitempty"`
}

// Options are the sampler's dependencies.
type Options struct {
	Publisher Publisher
	Log       *slog.Logger
	// Observer, if set, gets a sensor's health after each read attempt
	// (the agent records it in state.db). It runs on the sensor's loop and
	// must return quickly.
	Observer func(Health)
	Env      Env
	// QueueSize bounds the readings and alerts kept in memory, in order,
	// while the local publish fails (disk full); default DefaultQueueSize.
	QueueSize int
	// Wall is the wall clock readings are stamped with and whether it is
	// synchronised (the agent's clock, which a test can step); default
	// time.Now and the kernel's NTP state. mono_ns and boot_id always come
	// from the kernel, so re-basing still works.
	Wall func() (time.Time, bool)
}

// DefaultQueueSize covers 1000 samples: about 100 s of 10 sensors at 1 s.
const DefaultQueueSize = 1000

// MaxBackoff caps a failing sensor's retry delay, in intervals.
const MaxBackoff = 10

// publishTimeout bounds one local publish; a publish that times out stays
// at the head of the queue and is retried.
const publishTimeout = 5 * time.Second

// Sampler runs one loop per sensor and one publisher that drains their
// readings, in order, into the local streams.
type Sampler struct {
	opts    Options
	log     *slog.Logger
	bootID  string
	out     *outbox
	sensors []*sensor
}

type sensor struct {
	cfg Config
	reg Registration

	// drv is touched only by the read goroutine; at most one read is in
	// flight per sensor (pending), so reads never overlap.
	drv     Driver
	pending chan readResult

	mu       sync.Mutex
	health   Health
	seq      uint64
	readErr  string
	pubErr   string
	alerting AlertKind // "" while no alert is raised
}

type readResult struct {
	vals   map[string]Value
	err    error
	notify <-chan struct{}
}

// NewSampler checks the configs; drivers are opened by each sensor's loop,
// so missing hardware degrades that sensor, not the agent. It validates a
// copy: validation decodes driver options into the configs, and the caller's
// slice is the live config that status and reloads read meanwhile.
func NewSampler(cfgs []Config, o Options) (*Sampler, error) {
	cfgs = slices.Clone(cfgs)
	if err := ValidateAll(cfgs); err != nil {
		return nil, err
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Wall == nil {
		o.Wall = systemWall
	}
	if o.QueueSize <= 0 {
		o.QueueSize = DefaultQueueSize
	}
	s := &Sampler{opts: o, log: o.Log, bootID: bootID(bootIDPath)}
	s.out = &outbox{max: max(o.QueueSize, 2), wake: make(chan struct{}, 1)}
	for _, c := range cfgs {
		reg, _ := Lookup(c.Driver)
		s.sensors = append(s.sensors, &sensor{cfg: c, reg: reg, health: Health{Name: c.Name, Driver: c.Driver}})
	}
	return s, nil
}

// Run samples until ctx ends, then flushes what is queued (briefly) and
// closes the drivers.
func (s *Sampler) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, se := range s.sensors {
		wg.Go(func() { s.loop(ctx, se) })
	}
	pubDone := make(chan struct{})
	go func() { defer close(pubDone); s.publishLoop(ctx) }()
	wg.Wait()
	<-pubDone
	s.flush(2 * time.Second)
	for _, se := range s.sensors {
		// A read still hung owns its driver and closes it when it returns
		// (its context is cancelled).
		if se.pending == nil && se.drv != nil {
			_ = se.drv.Close()
			se.drv = nil
		}
	}
	return nil
}

// loop schedules reads at start + k*interval: a slow read or a backoff
// skips ticks but never shifts the grid, so readings of one sensor stay
// aligned however long the agent runs.
func (s *Sampler) loop(ctx context.Context, se *sensor) {
	iv := se.cfg.Interval
	start := time.Now()
	next := start
	fails := 0
	var changed <-chan struct{}
	for {
		event := false
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Until(next)):
		case <-changed:
			event = true
		}
		if ctx.Err() != nil {
			return
		}
		notify, err := s.sample(ctx, se)
		changed = notify
		switch {
		case event:
			// An event read leaves the periodic schedule alone.
		case err != nil:
			fails++
			next = tickAtOrAfter(start, iv, later(time.Now(), next.Add(retryDelay(iv, fails))))
		default:
			fails = 0
			next = tickAtOrAfter(start, iv, later(time.Now(), next.Add(iv)))
		}
		se.mu.Lock()
		se.health.NextRead = next
		h := se.snapshot()
		se.mu.Unlock()
		if s.opts.Observer != nil {
			s.opts.Observer(h)
		}
	}
}

// retryDelay doubles the delay per consecutive failure, capped at MaxBackoff
// intervals: a dead sensor costs little, a recovered one is back soon.
func retryDelay(iv time.Duration, fails int) time.Duration {
	return retry.Exp(iv, MaxBackoff*iv, fails-1)
}

func tickAtOrAfter(start time.Time, iv time.Duration, t time.Time) time.Time {
	d := t.Sub(start)
	if d <= 0 {
		return start
	}
	k := (d + iv - 1) / iv
	return start.Add(k * iv)
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// sample reads once and queues the reading (and any alert) for
// publishing. It returns the driver's event channel, if it has one.
func (s *Sampler) sample(ctx context.Context, se *sensor) (<-chan struct{}, error) {
	res := s.read(ctx, se)
	vals, err := res.vals, res.err
	st := stamp{mono: bootMono()}
	st.wall, st.synced = s.opts.Wall()
	se.mu.Lock()
	if err != nil {
		if ctx.Err() != nil {
			se.mu.Unlock()
			return nil, err
		}
		se.health.Errors++
		first := se.readErr == ""
		se.readErr = err.Error()
		se.refresh()
		se.mu.Unlock()
		if first {
			s.log.Warn("sensor read failed; retrying with backoff", "sensor", se.cfg.Name, "driver", se.cfg.Driver, "err", err)
		}
		return nil, err
	}
	if se.readErr != "" {
		s.log.Info("sensor recovered", "sensor", se.cfg.Name, "errors", se.health.Errors)
	}
	se.readErr = ""
	se.seq++
	r := Reading{
		Sensor: se.cfg.Name, Driver: se.cfg.Driver, Seq: se.seq,
		Time: st.wall.UTC(), BootID: s.bootID, Mono: st.mono, ClockSynced: st.synced,
		Values: vals, Quality: QualityOK,
	}
	for _, v := range vals {
		if v.Flag != "" {
			r.Quality = QualityDegraded
		}
	}
	se.health.LastValues, se.health.LastRead = vals, st.wall
	alert := se.evalAlert(r)
	se.refresh()
	se.mu.Unlock()

	s.enqueue(se, "telemetry."+se.cfg.Name, r)
	if alert != nil {
		s.enqueue(se, "alerts."+se.cfg.Name, alert)
	}
	return res.notify, nil
}

func (s *Sampler) enqueue(se *sensor, subject string, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		// Only a NaN/Inf value can fail here; name it rather than lose it
		// silently.
		se.mu.Lock()
		se.health.Errors++
		se.readErr = fmt.Sprintf("encode %s: %v", subject, err)
		se.refresh()
		se.mu.Unlock()
		return
	}
	if dropped := s.out.push(outMsg{se: se, subject: subject, data: data}); dropped != nil {
		dropped.mu.Lock()
		dropped.health.Dropped++
		dropped.mu.Unlock()
	}
}

// read runs the driver in its own goroutine so a driver that ignores ctx
// cannot stall the loop: on timeout the read is abandoned and counted.
func (s *Sampler) read(ctx context.Context, se *sensor) readResult {
	if se.pending != nil {
		select {
		case <-se.pending:
			se.pending = nil
		default:
			return readResult{err: fmt.Errorf("an earlier read is still hung (the driver is not answering); not starting another")}
		}
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan readResult, 1)
	go func() { done <- se.readOnce(rctx, s.opts.Env) }()
	select {
	case r := <-done:
		cancel()
		return r
	case <-time.After(se.cfg.Timeout):
		cancel()
		se.pending = done
		se.mu.Lock()
		se.health.Timeouts++
		se.mu.Unlock()
		return readResult{err: fmt.Errorf("read timed out after %s; abandoned, the driver is reopened when it returns", se.cfg.Timeout)}
	case <-ctx.Done():
		cancel()
		se.pending = done
		return readResult{err: ctx.Err()}
	}
}

// readOnce opens the driver if needed and reads. Any failure closes the
// driver so the next attempt reopens it: a sensor that lost power, a bus
// that was re-enabled or a device node that reappeared all come back.
func (se *sensor) readOnce(ctx context.Context, env Env) readResult {
	if se.drv == nil {
		d, err := se.reg.New(se.cfg, se.cfg.Options, env)
		if err != nil {
			return readResult{err: fmt.Errorf("open: %w", err)}
		}
		se.drv = d
	}
	vals, err := se.drv.Read(ctx)
	if ev, ok := se.drv.(eventer); ok {
		se.addEvents(ev.TakeEvents())
	}
	if err == nil && ctx.Err() != nil {
		err = ctx.Err()
	}
	if err != nil {
		_ = se.drv.Close()
		se.drv = nil
		return readResult{err: err}
	}
	if len(vals) == 0 {
		return readResult{err: errors.New("driver returned no values")}
	}
	r := readResult{vals: vals}
	if n, ok := se.drv.(Notifier); ok {
		r.notify = n.Changed()
	}
	return r
}

// eventer is a driver that counts bus events (retries, timeouts) a
// successful read hides.
type eventer interface {
	TakeEvents() map[string]uint64
}

func (se *sensor) addEvents(ev map[string]uint64) {
	if len(ev) == 0 {
		return
	}
	se.mu.Lock()
	defer se.mu.Unlock()
	// A fresh map each time: snapshots handed out earlier stay unchanged.
	m := make(map[string]uint64, len(se.health.Events)+len(ev))
	maps.Copy(m, se.health.Events)
	for k, n := range ev {
		m[k] += n
	}
	se.health.Events = m
}

// evalAlert applies the threshold rules with hysteresis; se.mu is held.
func (se *sensor) evalAlert(r Reading) *Alert {
	c := se.cfg
	if c.AlertAbove == nil && c.AlertBelow == nil {
		return nil
	}
	metric := c.AlertMetric
	if metric == "" {
		metric = firstKey(r.Values)
	}
	v, ok := r.Values[metric]
	if !ok {
		return nil
	}
	a := &Alert{
		Sensor: c.Name, Metric: metric, Hysteresis: c.Hysteresis, Value: v, Seq: r.Seq,
		Time: r.Time, BootID: r.BootID, Mono: r.Mono, ClockSynced: r.ClockSynced,
	}
	switch se.alerting {
	case "":
		switch {
		case c.AlertAbove != nil && v.V > *c.AlertAbove:
			a.Kind, a.Threshold = AlertAbove, *c.AlertAbove
		case c.AlertBelow != nil && v.V < *c.AlertBelow:
			a.Kind, a.Threshold = AlertBelow, *c.AlertBelow
		default:
			return nil
		}
		a.State, se.alerting = AlertRaised, a.Kind
	case AlertAbove:
		if v.V > *c.AlertAbove-c.Hysteresis {
			return nil
		}
		a.State, a.Kind, a.Threshold, se.alerting = AlertCleared, AlertAbove, *c.AlertAbove, ""
	case AlertBelow:
		if v.V < *c.AlertBelow+c.Hysteresis {
			return nil
		}
		a.State, a.Kind, a.Threshold, se.alerting = AlertCleared, AlertBelow, *c.AlertBelow, ""
	}
	se.health.Alerting = se.alerting != ""
	return a
}

func firstKey(m map[string]Value) string {
	first := ""
	for k := range m {
		if first == "" || k < first {
			first = k
		}
	}
	return first
}

// refresh derives OK and LastError; se.mu is held.
func (se *sensor) refresh() {
	se.health.LastError = se.readErr
	if se.health.LastError == "" {
		se.health.LastError = se.pubErr
	}
	se.health.OK = se.health.LastError == "" && se.seq > 0
}

func (se *sensor) snapshot() Health { return se.health }

// Health returns each sensor's state, failing ones first, else config
// order.
func (s *Sampler) Health() []Health {
	out := make([]Health, 0, len(s.sensors))
	for _, se := range s.sensors {
		se.mu.Lock()
		out = append(out, se.snapshot())
		se.mu.Unlock()
	}
	sort.SliceStable(out, func(i, j int) bool { return !out[i].OK && out[j].OK })
	return out
}

// publishLoop drains the queue in order. A failed publish keeps its message
// at the head and retries with backoff, so a disk-full outage shorter than
// the queue loses nothing and reorders nothing.
func (s *Sampler) publishLoop(ctx context.Context) {
	wait := 100 * time.Millisecond
	for {
		err, ok := s.publishHead(ctx)
		switch {
		case !ok:
			select {
			case <-ctx.Done():
				return
			case <-s.out.wake:
			}
		case err != nil:
			if ctx.Err() != nil {
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
			wait = retry.Exp(wait, 5*time.Second, 1)
		default:
			wait = 100 * time.Millisecond
		}
	}
}

// publishHead publishes the oldest queued message; ok is false when the
// queue is empty.
func (s *Sampler) publishHead(ctx context.Context) (err error, ok bool) {
	m, ok := s.out.head()
	if !ok {
		return nil, false
	}
	pctx, cancel := context.WithTimeout(ctx, publishTimeout)
	err = s.opts.Publisher.Publish(pctx, m.subject, m.data)
	cancel()
	queued := s.out.done(m.id, err == nil)
	se := m.se
	se.mu.Lock()
	defer se.mu.Unlock()
	if err != nil {
		first := se.pubErr == ""
		se.pubErr = fmt.Sprintf("publish %s: %v (kept in memory and retried; %d queued)", m.subject, err, queued)
		se.refresh()
		if first {
			s.log.Warn("local publish failed; keeping readings in memory", "sensor", se.cfg.Name, "subject", m.subject, "queued", queued, "err", err)
		}
		return err, true
	}
	se.pubErr = ""
	se.health.Published++
	se.refresh()
	return nil, true
}

// flush gives queued messages a last chance after the loops stop; what is
// still queued after d is logged as lost.
func (s *Sampler) flush(d time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	for ctx.Err() == nil {
		err, ok := s.publishHead(ctx)
		if !ok {
			return
		}
		if err != nil {
			break
		}
	}
	if n := s.out.len(); n > 0 {
		s.log.Error("stopping with readings not yet accepted by the local stream; they are lost", "count", n)
	}
}

type outMsg struct {
	id      uint64
	se      *sensor
	subject string
	data    []byte
}

// outbox is the bounded FIFO shared by all sensors. When full it drops the
// oldest message not being published, so the freshest data survives.
type outbox struct {
	mu       sync.Mutex
	q        []outMsg
	max      int
	nextID   uint64
	inflight uint64 // id of the head being published, 0 if none
	wake     chan struct{}
}

// push queues m and returns the sensor whose message was dropped, if any.
func (o *outbox) push(m outMsg) *sensor {
	o.mu.Lock()
	var dropped *sensor
	if len(o.q) >= o.max {
		i := 0
		if o.inflight != 0 && o.q[0].id == o.inflight {
			i = 1
		}
		dropped = o.q[i].se
		o.q = append(o.q[:i], o.q[i+1:]...)
	}
	o.nextID++
	m.id = o.nextID
	o.q = append(o.q, m)
	o.mu.Unlock()
	select {
	case o.wake <- struct{}{}:
	default:
	}
	return dropped
}

func (o *outbox) head() (outMsg, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.q) == 0 {
		return outMsg{}, false
	}
	o.inflight = o.q[0].id
	return o.q[0], true
}

// done ends the in-flight publish of id, removing it if it was accepted,
// and returns the queue length.
func (o *outbox) done(id uint64, accepted bool) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.inflight = 0
	if accepted && len(o.q) > 0 && o.q[0].id == id {
		o.q[0] = outMsg{}
		o.q = o.q[1:]
	}
	return len(o.q)
}

func (o *outbox) len() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.q)
}
