package buffer

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	bolt "go.etcd.io/bbolt"
)

// buffer.max_age is enforced here, not by JetStream. nats-server expires
// MaxAge by the wall clock against each message's wall-clock store time, so
// a clock step (a bad RTC, a Raspberry Pi booting at 1970 and NTP stepping
// it 56 years forward, an operator's `date -s`) would purge readings the hub
// never had. The Ager measures age on "agent time" instead: monotonic time
// accumulated while the agent runs, carried across restarts in state.db.
//
// Every tick it records a checkpoint (agent time, the last sequence of each
// stream). A message is older than its checkpoint's agent time says, so once
// a checkpoint is max_age of agent time old, every message up to its
// sequences is at least that old and is purged. Agent time can only
// under-count real time, never over-count, so nothing is ever expired early:
//
//   - a wall-clock jump changes nothing (only the monotonic clock counts);
//   - downtime between two runs counts only when the kernel reported the
//     clock synchronised at the last checkpoint before the stop and when it
//     is counted after the restart (possibly ticks later, when NTP syncs);
//     otherwise it does not age readings;
//   - with no checkpoints (first start, an upgrade from an agent that left
//     age to JetStream, state.db lost) what is stored starts ageing now.
//
// The price is that readings may be kept longer than max_age (by downtime
// that could not be trusted, and by up to one tick); buffer.max_bytes still
// bounds the disk.

// Clock is the time the Ager runs on; tests inject one to drive jumps.
type Clock interface {
	// Now is the wall clock, which may jump either way.
	Now() time.Time
	// Mono is a monotonic reading from an arbitrary origin: it never jumps
	// and only the differences between two readings of one process mean
	// anything.
	Mono() time.Duration
	// Synced reports whether the kernel considers the wall clock
	// synchronised (NTP); only then is a wall-clock difference across a
	// restart trusted.
	Synced() bool
}

// Ager tuning.
const (
	// JumpThreshold is how far the wall clock must move against the
	// monotonic clock between two looks for it to count as a jump.
	JumpThreshold = 2 * time.Second
	// DefaultClockWatch is how often the Ager looks at the clocks for
	// jumps, between its (much rarer) ticks.
	DefaultClockWatch = time.Second
	// jumpShownFor is how long (monotonic) status keeps showing a jump.
	jumpShownFor = time.Hour
	// stopTimeout bounds the checkpoint written at a graceful stop.
	stopTimeout = 2 * time.Second
)

// AgeTick is the default checkpoint and purge interval: max_age/1000 within
// [1 min, 1 h]. A reading may outlive max_age by up to one tick, and state.db
// holds about max_age/tick checkpoints.
func AgeTick(maxAge time.Duration) time.Duration {
	return min(max(maxAge/1000, time.Minute), time.Hour)
}

// AgeCheckpoint is one point of agent time, kept in state.db.
type AgeCheckpoint struct {
	// Agent is the agent time when it was taken.
	Agent time.Duration `json:"agent_ns"`
	// Wall and Synced are the wall clock then and whether the kernel had it
	// synchronised: the start of the downtime a restart may count.
	Wall   time.Time `json:"wall"`
	Synced bool      `json:"synced"`
	Boot   uint64    `json:"boot"`
	// Seqs is each stream's last sequence then: every message up to it is
	// at least as old as this checkpoint.
	Seqs map[string]uint64 `json:"seqs"`
}

type ageEntry struct {
	key uint64
	cp  AgeCheckpoint
}

// ClockJump is a wall-clock step the Ager saw while running.
type ClockJump struct {
	// Size is how far the wall clock moved beyond the monotonic clock:
	// positive forward, negative back.
	Size time.Duration `json:"size_ns"`
	// At is the wall clock just after the jump.
	At time.Time `json:"at"`
}

// AgeStatus is what the Ager did, for status and metrics.
type AgeStatus struct {
	MaxAge time.Duration `json:"max_age_ns"`
	// AgentTime is the agent time now: what readings are aged on.
	AgentTime   time.Duration `json:"agent_time_ns"`
	Checkpoints int           `json:"checkpoints"`
	// LastPurge is the wall clock of the last purge by age, this run.
	LastPurge time.Time `json:"last_purge,omitzero"`
	// Expired counts readings purged by age per stream, this run.
	Expired map[string]uint64 `json:"expired_by_age,omitempty"`
	// Downtime says how the time the agent was down before this start was
	// treated (counted, not counted and why, or waiting for a synced clock).
	Downtime string `json:"downtime,omitempty"`
	// Jump is the last wall-clock jump seen, shown for an hour; Jumps
	// counts them this run.
	Jump  *ClockJump `json:"jump,omitempty"`
	Jumps uint64     `json:"jumps"`
}

// AgerOptions are the Ager's dependencies; Clock is required.
type AgerOptions struct {
	Clock Clock
	// Tick is the checkpoint and purge interval (default AgeTick(max_age)).
	Tick time.Duration
	// Watch is how often Run looks for wall-clock jumps (default
	// DefaultClockWatch).
	Watch time.Duration
	Log   *slog.Logger
}

// Ager enforces buffer.max_age on the agent's streams (see the top of this
// file).
type Ager struct {
	js     jetstream.JetStream
	st     *State
	maxAge time.Duration
	clk    Clock
	tick   time.Duration
	watch  time.Duration
	log    *slog.Logger

	mu sync.Mutex
	// Agent time is base + downtime + (clk.Mono() - mono0).
	base, downtime, mono0 time.Duration
	// pending is the previous run's last checkpoint while its downtime
	// waits for a synchronised clock.
	pending  *AgeCheckpoint
	downNote string
	// The last look at the clocks, for jump detection.
	prevWall  time.Time
	prevMono  time.Duration
	jump      *ClockJump
	jumpMono  time.Duration
	jumps     uint64
	lastPurge time.Time
	expired   map[string]uint64
}

// NewAger prepares the Ager from the checkpoints in st. Run it after the
// streams' check (Opening.Check), which clamps the checkpoints to what the
// streams still hold; the constructor reads only the last one's times.
func NewAger(js jetstream.JetStream, st *State, c Config, o AgerOptions) (*Ager, error) {
	if o.Clock == nil {
		return nil, errors.New("buffer ager: no clock")
	}
	if c.MaxAge <= 0 {
		return nil, errors.New("buffer ager: buffer.max_age is 0 (no age limit): there is nothing to enforce")
	}
	if o.Tick <= 0 {
		o.Tick = AgeTick(c.MaxAge)
	}
	if o.Watch <= 0 {
		o.Watch = DefaultClockWatch
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	a := &Ager{js: js, st: st, maxAge: c.MaxAge, clk: o.Clock, tick: o.Tick, watch: o.Watch, log: o.Log,
		mono0: o.Clock.Mono(), expired: map[string]uint64{}}
	last, ok := st.lastAgeCheckpoint()
	switch {
	case !ok:
		a.downNote = "no age checkpoints (first start, upgrade, or state.db lost): stored readings start ageing now"
	case last.Synced:
		a.base, a.pending = last.Agent, &last
		a.downNote = fmt.Sprintf("waiting for a synchronised clock to count the downtime since %s", last.Wall.UTC().Format(time.RFC3339))
	default:
		a.base = last.Agent
		a.downNote = "downtime before this start not counted: the clock was not synchronised at the last checkpoint"
	}
	a.log.Info("readings age on agent time, not on the wall clock",
		"max_age", c.MaxAge.String(), "tick", a.tick.String(), "agent_time", a.base.String(), "downtime", a.downNote)
	return a, nil
}

// Run checks at once, then every tick, looking for clock jumps in between,
// until ctx ends; then it writes a last checkpoint (State.Close commits
// it). A failing check (JetStream restarting) is logged and retried at the
// next tick: ageing late is always safe.
func (a *Ager) Run(ctx context.Context) error {
	tick, watch := time.NewTicker(a.tick), time.NewTicker(a.watch)
	defer tick.Stop()
	defer watch.Stop()
	failing := false
	for {
		err := a.Check(ctx)
		switch {
		case err != nil && ctx.Err() == nil && !failing:
			a.log.Warn("age check failed; retrying at the next tick", "every", a.tick.String(), "err", err)
		case err == nil && failing:
			a.log.Info("age checks work again")
		}
		failing = err != nil
	wait:
		for {
			select {
			case <-ctx.Done():
				sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), stopTimeout)
				defer cancel()
				if err := a.checkpoint(sctx); err != nil {
					a.log.Warn("no age checkpoint at stop; the time since the last one is not counted", "err", err)
				}
				return nil
			case <-watch.C:
				a.observeClock()
			case <-tick.C:
				break wait
			}
		}
	}
}

// Check is one tick: look at the clocks, count the previous downtime if it
// can be trusted now, record a checkpoint, purge what max_age of agent time
// has passed over, and forget checkpoints that can no longer matter.
func (a *Ager) Check(ctx context.Context) error {
	a.observeClock()
	a.resolveDowntime()
	if err := a.checkpoint(ctx); err != nil {
		return err
	}
	return a.purge(ctx)
}

// AgentTime is the age clock now.
func (a *Ager) AgentTime() time.Duration {
	mono := a.clk.Mono()
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.base + a.downtime + mono - a.mono0
}

// Status reports what the Ager did.
func (a *Ager) Status() AgeStatus {
	now := a.AgentTime()
	mono := a.clk.Mono()
	n := a.st.ageCheckpointCount()
	a.mu.Lock()
	defer a.mu.Unlock()
	s := AgeStatus{MaxAge: a.maxAge, AgentTime: now, Checkpoints: n, LastPurge: a.lastPurge,
		Downtime: a.downNote, Jumps: a.jumps}
	if len(a.expired) > 0 {
		s.Expired = maps.Clone(a.expired)
	}
	if a.jump != nil && mono-a.jumpMono < jumpShownFor {
		j := *a.jump
		s.Jump = &j
	}
	return s
}

// observeClock logs a wall-clock jump once, with its size.
func (a *Ager) observeClock() {
	wall, mono, synced := a.clk.Now().Round(0), a.clk.Mono(), a.clk.Synced()
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.prevWall.IsZero() {
		expect := a.prevWall.Add(mono - a.prevMono)
		if d := wall.Sub(expect); d > JumpThreshold || d < -JumpThreshold {
			a.jumps++
			a.jump, a.jumpMono = &ClockJump{Size: d, At: wall}, mono
			a.log.Warn("wall clock jumped; no reading expires because of it",
				"jump", d.String(), "expected", expect.UTC().Format(time.RFC3339), "now", wall.UTC().Format(time.RFC3339), "synced", synced)
		}
	}
	a.prevWall, a.prevMono = wall, mono
}

// resolveDowntime counts the previous downtime once the clock is
// synchronised: the restart's wall time is reconstructed from now minus the
// monotonic time since, so a clock synced hours after the start still
// measures the downtime right. A negative result (the clock went back)
// counts nothing.
func (a *Ager) resolveDowntime() {
	a.mu.Lock()
	pending := a.pending
	a.mu.Unlock()
	if pending == nil || !a.clk.Synced() {
		return
	}
	started := a.clk.Now().Round(0).Add(-(a.clk.Mono() - a.mono0))
	d := max(started.Sub(pending.Wall), 0)
	a.mu.Lock()
	a.pending, a.downtime = nil, d
	a.downNote = fmt.Sprintf("downtime of %s before this start counted (clock synchronised at the last checkpoint and after the start)", d.Round(time.Second))
	a.mu.Unlock()
	a.log.Info("downtime counted as age", "downtime", d.String(), "clock", "synchronised before the stop and now")
}

// checkpoint records the agent time and each stream's last sequence.
func (a *Ager) checkpoint(ctx context.Context) error {
	seqs := make(map[string]uint64, len(Lanes))
	for _, name := range Lanes {
		str, err := a.stream(ctx, name)
		if err != nil {
			return err
		}
		seqs[name] = str.CachedInfo().State.LastSeq
	}
	wall, synced := a.clk.Now().Round(0), a.clk.Synced()
	a.st.addAgeCheckpoint(AgeCheckpoint{Agent: a.AgentTime(), Wall: wall, Synced: synced, Boot: a.st.BootCount(), Seqs: seqs})
	return nil
}

// purge removes, per stream, every message up to the sequences of the
// newest checkpoint that is max_age of agent time old, then drops the
// checkpoints older than it.
func (a *Ager) purge(ctx context.Context) error {
	cut, ok := a.st.ageCheckpointBefore(a.AgentTime() - a.maxAge)
	if !ok {
		return nil
	}
	for _, name := range Lanes {
		seq := cut.cp.Seqs[name]
		str, err := a.stream(ctx, name)
		if err != nil {
			return err
		}
		info := str.CachedInfo().State
		if seq > info.LastSeq {
			// Only damage moves a stream's end back, and OpenStreams'
			// check clamps checkpoints when it finds it; until then, purging
			// by a sequence the stream does not have could take new
			// messages that reuse it.
			a.log.Warn("age checkpoint past the stream's end; not purging by it", "stream", name, "checkpoint_seq", seq, "last_seq", info.LastSeq)
			a.st.clampAge(name, info.LastSeq)
			continue
		}
		if info.Msgs == 0 || seq < info.FirstSeq {
			continue
		}
		if err := str.Purge(ctx, jetstream.WithPurgeSequence(seq+1)); err != nil {
			return fmt.Errorf("age purge of stream %s up to seq %d: %w", name, seq, err)
		}
		// The purge reply has no count: the stream's range says it,
		// exact unless messages inside it were deleted individually.
		n := min(seq-info.FirstSeq+1, info.Msgs)
		a.mu.Lock()
		a.expired[name] += n
		a.lastPurge = a.clk.Now()
		a.mu.Unlock()
		a.log.Info("readings expired by buffer.max_age of agent time", "stream", name, "purged", n, "up_to_seq", seq, "max_age", a.maxAge.String(), "checkpoint_wall", cut.cp.Wall.UTC().Format(time.RFC3339))
	}
	a.st.pruneAgeBefore(cut.key)
	return nil
}

// stream looks name up; its CachedInfo is the state at this call.
func (a *Ager) stream(ctx context.Context, name string) (jetstream.Stream, error) {
	s, err := a.js.Stream(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("age check: stream %s: %w", name, err)
	}
	return s, nil
}

// The State side: checkpoints live in memory and are committed with the
// other batched writes (one per tick, so they add no fsync of their own).

func (s *State) addAgeCheckpoint(cp AgeCheckpoint) {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := s.ageFloor
	if n := len(s.age); n > 0 {
		key = s.age[n-1].key + 1
	}
	s.age = append(s.age, ageEntry{key: key, cp: cp})
	s.dirtyAge[key] = true
	s.dirty()
}

func (s *State) lastAgeCheckpoint() (AgeCheckpoint, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.age) == 0 {
		return AgeCheckpoint{}, false
	}
	return s.age[len(s.age)-1].cp, true
}

func (s *State) ageCheckpointCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.age)
}

// ageCheckpointBefore is the newest checkpoint taken at or before agent
// time t. Checkpoints are in agent-time order: a run starts from the last
// one's agent time and only adds to it.
func (s *State) ageCheckpointBefore(t time.Duration) (ageEntry, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out ageEntry
	ok := false
	for _, e := range s.age {
		if e.cp.Agent > t {
			break
		}
		out, ok = e, true
	}
	return out, ok
}

// pruneAgeBefore forgets the checkpoints older than key: a newer one has
// purged at least as much.
func (s *State) pruneAgeBefore(key uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := 0
	for i < len(s.age) && s.age[i].key < key {
		delete(s.dirtyAge, s.age[i].key)
		i++
	}
	if i == 0 {
		return
	}
	s.age = append([]ageEntry(nil), s.age[i:]...)
	s.ageFloor = key
	s.dirty()
}

// clampAge lowers stream's sequence in every checkpoint to at most last.
func (s *State) clampAge(stream string, last uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.age {
		cp := &s.age[i].cp
		if cp.Seqs[stream] > last {
			cp.Seqs = maps.Clone(cp.Seqs)
			cp.Seqs[stream] = last
			s.dirtyAge[s.age[i].key] = true
			s.dirty()
		}
	}
}

// flushAge writes the changed checkpoints and deletes the pruned ones;
// called by Flush inside its transaction, with s.mu held.
func (s *State) flushAge(b *bolt.Bucket) error {
	c := b.Cursor()
	for k, _ := c.First(); k != nil && len(k) == 8 && binary.BigEndian.Uint64(k) < s.ageFloor; k, _ = c.First() {
		if err := c.Delete(); err != nil {
			return err
		}
	}
	for _, e := range s.age {
		if !s.dirtyAge[e.key] {
			continue
		}
		v, err := json.Marshal(e.cp)
		if err != nil {
			return err
		}
		if err := b.Put(u64(e.key), v); err != nil {
			return err
		}
	}
	return nil
}
