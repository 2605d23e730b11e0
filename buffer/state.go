package buffer

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	bolt "go.etcd.io/bbolt"
)

// Batching bounds: a reading's bookkeeping reaches disk within FlushInterval,
// and a burst never holds more than flushEarly dirty records in memory.
// bbolt fsyncs per transaction and rewrites a few pages each time; one
// transaction per batch keeps state.db from adding an fsync per reading on
// an SD card. What a crash can lose is at most FlushInterval of cursor
// progress, which only means resends the hub deduplicates.
const (
	FlushInterval = 2 * time.Second
	flushEarly    = 512
	linkRingSize  = 100
	eventRingSize = 50
	// openTimeout bounds waiting for bbolt's flock: a second process holding
	// state.db must produce an error, never a hang.
	openTimeout = time.Second
	// checkTimeout bounds validating a possibly corrupt file: bbolt can loop
	// or panic on garbage, and a start must never hang on it.
	checkTimeout = 10 * time.Second
)

// Bucket names in state.db; part of the on-disk format, never renamed.
var (
	bMeta    = []byte("meta")
	bCursors = []byte("cursors")
	bEvicted = []byte("evicted")
	bLinks   = []byte("links")
	bSensors = []byte("sensors")
	bMisc    = []byte("misc")
	bEvents  = []byte("events")
	bIDs     = []byte("ids") // stream -> laneIDs JSON
	bAge     = []byte("age") // big-endian key -> AgeCheckpoint JSON, oldest first (see age.go)
	allBkts  = [][]byte{bMeta, bCursors, bEvicted, bLinks, bSensors, bMisc, bEvents, bIDs, bAge}
	// bIssued held a durable bound of the message ids sent, from before
	// every start drew a new epoch; older files still have it (validated,
	// never read).
	bIssued = []byte("issued")
)

// ErrReadOnly is returned by writes on a state opened with OpenStateReadOnly.
var ErrReadOnly = errors.New("state.db is open read-only")

// LinkEvent is one entry of the uplink's history, kept for status.
type LinkEvent struct {
	Time   time.Time `json:"time"`
	Kind   string    `json:"kind"` // connect|disconnect|error|stall|duplicate
	Reason string    `json:"reason,omitempty"`
}

// SensorRecord is the last known reading and error of one sensor, so status
// can show them even when the daemon is down.
type SensorRecord struct {
	Values    json.RawMessage `json:"values,omitempty"`
	LastRead  time.Time       `json:"last_read"`
	LastError string          `json:"last_error,omitempty"`
	Errors    uint64          `json:"errors"`
}

// StateEvent is a recovery the buffer performed (state.db moved aside, a
// damaged stream, disk full, JetStream re-enabled). Technicians need these
// because each one may mean lost or duplicated data.
type StateEvent struct {
	Time   time.Time `json:"time"`
	Boot   uint64    `json:"boot"`
	Kind   string    `json:"kind"`
	Detail string    `json:"detail"`
}

// Event kinds.
const (
	EventStateCorrupt     = "state_db_corrupt"
	EventStreamDamaged    = "stream_damaged"
	EventStreamRecreated  = "stream_recreated"
	EventDiskFull         = "disk_full"
	EventDiskRecovered    = "disk_recovered"
	EventJetStreamEnabled = "jetstream_reenabled"
	EventStateRestored    = "state_restored"
)

// Epoch gives the message ids of a stream's sequences from From onwards
// (up to the next epoch) the id ID: <site>.<ID>.<stream>.<seq>. A stream
// whose sequence went backwards (truncated block, power cut with an
// interval sync) reuses sequence numbers for new messages; a new epoch
// gives those new ids, while the messages that survived keep the ids they
// were forwarded with, so a resend of them is still dropped by the hub.
type Epoch struct {
	From uint64 `json:"from"`
	ID   string `json:"id"`
}

// laneIDs is a stream's identity: StreamID is created with the stream (a
// recreated stream is a new sequence space), Epochs are its message-id
// epochs, oldest first. Gen counts epoch changes: when state.db and the
// stream metadata disagree, the higher one is the newer.
type laneIDs struct {
	StreamID string  `json:"stream_id,omitempty"`
	Epochs   []Epoch `json:"epochs"`
	Gen      uint64  `json:"gen,omitempty"`
}

// idFor is the epoch id of seq; the first epoch also covers what comes
// before it (pruned epochs: sequences the stream no longer holds).
func (l laneIDs) idFor(seq uint64) string {
	// Every start adds an epoch, so the list is searched, not walked.
	i, _ := slices.BinarySearchFunc(l.Epochs[1:], seq, func(e Epoch, seq uint64) int { return cmp.Compare(e.From, seq+1) })
	return l.Epochs[i].ID
}

// State is state.db: identity, boot count, forwarder cursors, link history,
// sensor records and recovery events. Reads come from memory; writes are
// kept in memory and committed in batches by Run (or Flush), except
// ResetCursor and identity, which are committed at once.
type State struct {
	path     string
	log      *slog.Logger
	readOnly bool

	mu      sync.Mutex
	lossMu  sync.Mutex // one read-modify-write of the loss records at a time
	db      *bolt.DB   // nil once closed
	storeID string
	boots   uint64
	cursors map[string]uint64
	evicted map[string]uint64
	sensors map[string]SensorRecord
	misc    map[string]json.RawMessage
	links   []LinkEvent // oldest first, at most linkRingSize
	linkSeq uint64      // key of the newest persisted link event
	events  []StateEvent
	evSeq   uint64
	ids     map[string]laneIDs
	// sent is the highest sequence per stream whose message id this
	// process handed out; prior is the end CheckStreams left (ids up to it
	// may have been sent by anyone). checked holds the streams this
	// process checked: the first check always draws a new epoch.
	sent    map[string]uint64
	prior   map[string]uint64
	checked map[string]bool
	// backup is where the flusher mirrors cursors (EDGE_AGENT_STATE), set
	// by CheckStreams; backedUp is what it holds.
	backup   jetstream.JetStream
	backedUp map[string]cursorRecord
	backErr  bool
	// age holds the ager's checkpoints, oldest first, with consecutive
	// keys; keys below ageFloor are deleted at the next flush.
	age      []ageEntry
	ageFloor uint64
	dirtyAge map[uint64]bool

	dirtyCursors map[string]bool
	dirtyEvicted map[string]bool
	dirtySensors map[string]bool
	dirtyMisc    map[string]bool
	newLinks     []LinkEvent
	newEvents    []StateEvent
	dirtyN       int
	kick         chan struct{}
}

// OpenState opens or creates state.db at path. A file bbolt cannot open or
// that fails its consistency check is moved aside as
// state.db.corrupt-<timestamp> and a fresh store is started: the agent must
// come up (its JetStream data is separate), and the event is kept for status.
func OpenState(path string, log *slog.Logger) (*State, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("create directory for state db %s: %w", path, err)
	}
	var recovered *StateEvent
	db, err := openChecked(path, false)
	if err != nil {
		if errors.Is(err, errLocked) {
			return nil, err
		}
		aside := fmt.Sprintf("%s.corrupt-%s", path, time.Now().UTC().Format("20060102T150405.000000000Z"))
		if rerr := os.Rename(path, aside); rerr != nil {
			return nil, fmt.Errorf("state db %s is unusable (%v) and could not be moved aside: %w (move it away by hand; the JetStream data in the same directory is not affected)", path, err, rerr)
		}
		log.Error("state.db is corrupt: moved aside, starting a fresh one (store id, message-id epochs and cursors are restored from the JetStream store; link history and sensor records are lost)", "path", path, "moved_to", aside, "err", err)
		recovered = &StateEvent{Time: time.Now(), Kind: EventStateCorrupt, Detail: fmt.Sprintf("%s was unusable (%v); moved to %s and started fresh", filepath.Base(path), err, filepath.Base(aside))}
		if db, err = openChecked(path, false); err != nil {
			return nil, fmt.Errorf("open fresh state db %s: %w", path, err)
		}
	}
	s := newState(path, log, db, false)
	if err := s.load(); err != nil {
		db.Close()
		return nil, fmt.Errorf("load state db %s: %w", path, err)
	}
	hadID := s.storeID != ""
	if err := s.boot(); err != nil {
		if !hadID {
			db.Close()
			return nil, fmt.Errorf("initialise state db %s: %w (is the disk full or read-only?)", path, err)
		}
		// A full disk must not keep the agent down: the store exists, only
		// the boot count is not recorded.
		log.Error("state.db: cannot record this boot (disk full?); running on, later writes are retried", "path", path, "err", err)
		s.boots++
	}
	if recovered != nil {
		s.AddEvent(recovered.Kind, recovered.Detail)
		if err := s.Flush(); err != nil {
			log.Warn("could not record the state.db recovery event", "err", err)
		}
	}
	return s, nil
}

// OpenStateReadOnly opens state.db for `edge-agent status` while the daemon
// may be down. When the daemon holds it, it fails within about a second with
// errLocked instead of waiting.
func OpenStateReadOnly(path string) (*State, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("state db %s: %w (has the agent ever run with this state_dir?)", path, err)
	}
	db, err := openChecked(path, true)
	if err != nil {
		return nil, err
	}
	s := newState(path, slog.New(slog.DiscardHandler), db, true)
	if err := s.load(); err != nil {
		db.Close()
		return nil, fmt.Errorf("read state db %s: %w", path, err)
	}
	return s, nil
}

var errLocked = errors.New("state db is locked by a running edge-agent")

// openChecked opens the bbolt file and validates it before anything else
// touches it. bbolt trusts its file: a truncated file makes it read beyond
// the mapping (SIGBUS), garbage pages make it panic (already inside Open,
// while loading the freelist) or loop. So Open and tx.Check run on a
// goroutine with memory faults turned into panics and recovered, the size is
// checked against the meta page, and the whole thing is bounded by
// checkTimeout.
func openChecked(path string, readOnly bool) (*bolt.DB, error) {
	if fi, err := os.Stat(path); err == nil && fi.Size() == 0 {
		// bbolt would silently initialise an empty file; an empty state.db
		// means it was truncated, and the operator should hear about it.
		return nil, errors.New("file is empty (truncated)")
	}
	type result struct {
		db  *bolt.DB
		err error
	}
	done := make(chan result, 1)
	go func() {
		var db *bolt.DB
		err := guarded(func() (err error) {
			db, err = bolt.Open(path, 0o640, &bolt.Options{Timeout: openTimeout, ReadOnly: readOnly})
			if errors.Is(err, bolt.ErrTimeout) {
				return fmt.Errorf("%w: %s (stop the agent first, or ask it: `edge-agent status`)", errLocked, path)
			}
			if err != nil {
				return fmt.Errorf("open: %w", err)
			}
			return checkDB(db)
		})
		if err != nil && db != nil {
			_ = guarded(db.Close)
			db = nil
		}
		done <- result{db, err}
	}()
	select {
	case r := <-done:
		return r.db, r.err
	case <-time.After(checkTimeout):
		// The goroutine is stuck inside bbolt on a corrupt file and keeps
		// its mapping alive, so it cannot be closed from here: it is
		// abandoned (it dies with the process) and the file moved aside.
		return nil, fmt.Errorf("open and consistency check did not finish in %s", checkTimeout)
	}
}

// guarded runs fn with memory faults turned into panics and panics into
// errors. A panic inside bbolt.Open leaves its file descriptor open: that
// leak is the price of not crash-looping, once per corrupt file.
func guarded(fn func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("bbolt panicked reading it: %v", r)
		}
	}()
	return fn()
}

func checkDB(db *bolt.DB) error {
	return db.View(func(tx *bolt.Tx) error {
		fi, err := os.Stat(db.Path())
		if err != nil {
			return err
		}
		if tx.Size() > fi.Size() {
			return fmt.Errorf("truncated: %d bytes on disk, %d expected", fi.Size(), tx.Size())
		}
		// Decode every record first, on this guarded goroutine: a bad
		// pointer faults here, recoverably, and a bit flip inside a value
		// (invisible to bbolt's structural check) is found now rather than
		// later.
		if err := tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			return b.ForEach(func(k, v []byte) error { return validRecord(name, k, v) })
		}); err != nil {
			return err
		}
		// Then bbolt's own check (freelist, page references, key order).
		// It runs on a goroutine of its own, where a fault would kill the
		// process, hence after the walk above touched every key and value.
		for cerr := range tx.Check() {
			if err == nil {
				err = fmt.Errorf("consistency check: %w", cerr)
			}
		}
		return err
	})
}

// validRecord decodes a record the way load will, so that anything load
// would choke on is found while the file can still be moved aside.
func validRecord(bucket, k, v []byte) error {
	var err error
	switch string(bucket) {
	case string(bCursors), string(bEvicted), string(bIssued):
		if len(v) != 8 {
			err = fmt.Errorf("%d-byte value, want 8", len(v))
		}
	case string(bSensors):
		err = json.Unmarshal(v, new(SensorRecord))
	case string(bLinks):
		err = json.Unmarshal(v, new(LinkEvent))
	case string(bEvents):
		err = json.Unmarshal(v, new(StateEvent))
	case string(bIDs):
		var l laneIDs
		if err = json.Unmarshal(v, &l); err == nil && len(l.Epochs) == 0 {
			err = errors.New("no id epochs")
		}
	case string(bAge):
		var c AgeCheckpoint
		if len(k) != 8 {
			err = fmt.Errorf("%d-byte key, want 8", len(k))
		} else {
			err = json.Unmarshal(v, &c)
		}
	case string(bMisc):
		if !json.Valid(v) {
			err = errors.New("not JSON")
		}
	}
	if err != nil {
		return fmt.Errorf("bucket %s key %q: %w", bucket, k, err)
	}
	return nil
}

func newState(path string, log *slog.Logger, db *bolt.DB, ro bool) *State {
	return &State{
		path: path, log: log, db: db, readOnly: ro,
		cursors: map[string]uint64{}, evicted: map[string]uint64{},
		sensors: map[string]SensorRecord{}, misc: map[string]json.RawMessage{},
		ids: map[string]laneIDs{}, sent: map[string]uint64{}, prior: map[string]uint64{}, checked: map[string]bool{},
		backedUp:     map[string]cursorRecord{},
		dirtyCursors: map[string]bool{}, dirtyEvicted: map[string]bool{},
		dirtySensors: map[string]bool{}, dirtyMisc: map[string]bool{}, dirtyAge: map[uint64]bool{},
		kick: make(chan struct{}, 1),
	}
}

func (s *State) load() error {
	return s.db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bMeta); b != nil {
			s.storeID = string(b.Get([]byte("store_id")))
			if v := b.Get([]byte("boot_count")); len(v) == 8 {
				s.boots = binary.BigEndian.Uint64(v)
			}
		}
		loadU64(tx.Bucket(bCursors), s.cursors)
		loadU64(tx.Bucket(bEvicted), s.evicted)
		if b := tx.Bucket(bIDs); b != nil {
			if err := b.ForEach(func(k, v []byte) error {
				var l laneIDs
				if err := json.Unmarshal(v, &l); err != nil || len(l.Epochs) == 0 {
					return fmt.Errorf("id epochs of %q: %v", k, err)
				}
				s.ids[string(k)] = l
				return nil
			}); err != nil {
				return err
			}
		}
		if b := tx.Bucket(bSensors); b != nil {
			if err := b.ForEach(func(k, v []byte) error {
				var r SensorRecord
				if err := json.Unmarshal(v, &r); err != nil {
					return fmt.Errorf("sensor %q: %w", k, err)
				}
				s.sensors[string(k)] = r
				return nil
			}); err != nil {
				return err
			}
		}
		if b := tx.Bucket(bAge); b != nil {
			if err := b.ForEach(func(k, v []byte) error {
				e := ageEntry{key: binary.BigEndian.Uint64(k)}
				if err := json.Unmarshal(v, &e.cp); err != nil {
					return fmt.Errorf("age checkpoint %d: %w", e.key, err)
				}
				s.age = append(s.age, e)
				return nil
			}); err != nil {
				return err
			}
			if len(s.age) > 0 {
				s.ageFloor = s.age[0].key
			}
		}
		if b := tx.Bucket(bMisc); b != nil {
			_ = b.ForEach(func(k, v []byte) error {
				s.misc[string(k)] = append(json.RawMessage(nil), v...)
				return nil
			})
		}
		var err error
		if s.linkSeq, err = loadRing(tx.Bucket(bLinks), &s.links); err != nil {
			return fmt.Errorf("link events: %w", err)
		}
		if s.evSeq, err = loadRing(tx.Bucket(bEvents), &s.events); err != nil {
			return fmt.Errorf("events: %w", err)
		}
		return nil
	})
}

func loadU64(b *bolt.Bucket, into map[string]uint64) {
	if b == nil {
		return
	}
	_ = b.ForEach(func(k, v []byte) error {
		into[string(k)] = binary.BigEndian.Uint64(v)
		return nil
	})
}

// loadRing reads a bucket keyed by big-endian sequence (so in order) and
// returns the newest key.
func loadRing[T any](b *bolt.Bucket, into *[]T) (uint64, error) {
	if b == nil {
		return 0, nil
	}
	var last uint64
	err := b.ForEach(func(k, v []byte) error {
		var e T
		if err := json.Unmarshal(v, &e); err != nil {
			return err
		}
		*into = append(*into, e)
		last = binary.BigEndian.Uint64(k)
		return nil
	})
	return last, err
}

// boot creates the buckets and the store id on first use and counts the boot,
// committed at once: the id must exist before any message id uses it.
func (s *State) boot() error {
	id, boots := s.storeID, s.boots+1
	err := s.db.Update(func(tx *bolt.Tx) error {
		for _, name := range allBkts {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		m := tx.Bucket(bMeta)
		if id == "" {
			id = newStoreID()
			if err := m.Put([]byte("store_id"), []byte(id)); err != nil {
				return err
			}
			if err := m.Put([]byte("created"), []byte(time.Now().UTC().Format(time.RFC3339))); err != nil {
				return err
			}
		}
		return m.Put([]byte("boot_count"), u64(boots))
	})
	if err == nil {
		s.storeID, s.boots = id, boots
	}
	return err
}

func newStoreID() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on Linux
	return hex.EncodeToString(b[:])
}

func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

// Path is the file this state lives in.
func (s *State) Path() string { return s.path }

// Close flushes what is pending and closes the file. Later writes stay in
// memory only; reads keep working.
func (s *State) Close() error {
	ferr := s.Flush()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.db == nil {
		return nil
	}
	err := s.db.Close()
	s.db = nil
	if errors.Is(ferr, ErrReadOnly) {
		ferr = nil
	}
	return errors.Join(ferr, err)
}

// Run commits batched writes every FlushInterval (sooner under bursts) until
// ctx ends, then commits what is left. A failed commit (disk full) is logged
// and retried: the records stay in memory meanwhile.
func (s *State) Run(ctx context.Context) error {
	if s.readOnly {
		return ErrReadOnly
	}
	t := time.NewTicker(FlushInterval)
	defer t.Stop()
	var failing bool
	for {
		select {
		case <-ctx.Done():
			err := s.Flush()
			// The parts stop together: the connection is still open, and
			// a clean stop leaves an exact cursor backup.
			bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), backupTimeout)
			s.backupCursors(bctx)
			cancel()
			return err
		case <-t.C:
		case <-s.kick:
		}
		err := s.Flush()
		s.backupCursors(ctx)
		switch {
		case err != nil && !failing:
			s.log.Error("state.db: cannot commit; keeping changes in memory and retrying", "path", s.path, "err", err)
		case err == nil && failing:
			s.log.Info("state.db: commits work again", "path", s.path)
		}
		failing = err != nil
	}
}

// Flush commits pending writes in one transaction.
func (s *State) Flush() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dirtyN == 0 {
		return nil
	}
	if s.readOnly {
		return ErrReadOnly
	}
	if s.db == nil {
		return errors.New("state.db is closed")
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		for k := range s.dirtyCursors {
			if err := tx.Bucket(bCursors).Put([]byte(k), u64(s.cursors[k])); err != nil {
				return err
			}
		}
		for k := range s.dirtyEvicted {
			if err := tx.Bucket(bEvicted).Put([]byte(k), u64(s.evicted[k])); err != nil {
				return err
			}
		}
		for k := range s.dirtySensors {
			v, _ := json.Marshal(s.sensors[k])
			if err := tx.Bucket(bSensors).Put([]byte(k), v); err != nil {
				return err
			}
		}
		for k := range s.dirtyMisc {
			if err := tx.Bucket(bMisc).Put([]byte(k), s.misc[k]); err != nil {
				return err
			}
		}
		if err := s.flushAge(tx.Bucket(bAge)); err != nil {
			return err
		}
		if _, err := appendRing(tx.Bucket(bLinks), s.linkSeq, s.newLinks, linkRingSize); err != nil {
			return err
		}
		_, err := appendRing(tx.Bucket(bEvents), s.evSeq, s.newEvents, eventRingSize)
		return err
	})
	if err != nil {
		return fmt.Errorf("commit state db %s: %w", s.path, err)
	}
	s.linkSeq += uint64(len(s.newLinks))
	s.evSeq += uint64(len(s.newEvents))
	clear(s.dirtyCursors)
	clear(s.dirtyEvicted)
	clear(s.dirtySensors)
	clear(s.dirtyMisc)
	clear(s.dirtyAge)
	s.newLinks, s.newEvents, s.dirtyN = nil, nil, 0
	return nil
}

// appendRing adds entries after key last and deletes what falls out of the
// ring, so the bucket never grows past size.
func appendRing[T any](b *bolt.Bucket, last uint64, add []T, size uint64) (uint64, error) {
	for _, e := range add {
		last++
		v, _ := json.Marshal(e)
		if err := b.Put(u64(last), v); err != nil {
			return 0, err
		}
	}
	if len(add) > 0 && last > size {
		c := b.Cursor()
		for k, _ := c.First(); k != nil && binary.BigEndian.Uint64(k) <= last-size; k, _ = c.First() {
			if err := c.Delete(); err != nil {
				return 0, err
			}
		}
	}
	return last, nil
}

// dirty counts a pending write and wakes Run early under a burst. Callers
// hold s.mu.
func (s *State) dirty() {
	s.dirtyN++
	if s.dirtyN == flushEarly {
		select {
		case s.kick <- struct{}{}:
		default:
		}
	}
}

// StoreID identifies this store: random, created once with the store (and
// kept in the JetStream store too, so losing state.db does not change it).
// Streams created before id epochs existed use it in their message ids.
func (s *State) StoreID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.storeID
}

// SetStoreID replaces the store id at once. The buffer uses it when the
// JetStream store and state.db disagree (see CheckStreams).
func (s *State) SetStoreID(id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.writeNow(func(tx *bolt.Tx) error { return tx.Bucket(bMeta).Put([]byte("store_id"), []byte(id)) }); err != nil {
		return err
	}
	s.storeID = id
	return nil
}

// MsgIDPrefix is the id that goes between the site and the stream in the
// message id of stream's sequence seq: the id of the epoch seq falls in.
// It is called as the forwarder sends seq, so it also keeps the highest
// sequence this process issued an id for (a check while running, after a
// JetStream restart, needs it; see CheckStreams).
func (s *State) MsgIDPrefix(stream string, seq uint64) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if seq > s.sent[stream] {
		s.sent[stream] = seq
	}
	return s.laneIDs(stream).idFor(seq)
}

// FreshFrom is the first sequence of stream whose message id no earlier
// process can have sent: the start of the epoch this process drew at its
// first check. Before that check nothing is known to be fresh.
func (s *State) FreshFrom(stream string) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.checked[stream] {
		return math.MaxUint64
	}
	eps := s.laneIDs(stream).Epochs
	return eps[len(eps)-1].From
}

// Epochs lists stream's message-id epochs, oldest first.
func (s *State) Epochs(stream string) []Epoch {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.laneIDs(stream).Epochs)
}

// laneIDs is stream's identity, by default (a store from before id epochs,
// or a stream not checked yet) one epoch of the store id; callers hold s.mu.
func (s *State) laneIDs(stream string) laneIDs {
	if l, ok := s.ids[stream]; ok {
		return l
	}
	return laneIDs{Epochs: []Epoch{{From: 1, ID: s.storeID}}}
}

// adoptIDs commits stream's identity and, if setCursor, its cursor
// (backwards too) in one transaction; issued is the highest sequence
// whose id in the current epoch may have been sent. Without setCursor the
// forwarder's progress meanwhile is kept.
func (s *State) adoptIDs(stream string, l laneIDs, cursor uint64, setCursor bool, issued uint64) error {
	v, err := json.Marshal(l)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	err = s.writeNow(func(tx *bolt.Tx) error {
		if setCursor {
			if err := tx.Bucket(bCursors).Put([]byte(stream), u64(cursor)); err != nil {
				return err
			}
		}
		return tx.Bucket(bIDs).Put([]byte(stream), v)
	})
	if err != nil {
		return err
	}
	if setCursor {
		s.cursors[stream] = cursor
	}
	s.ids[stream], s.prior[stream], s.checked[stream] = l, issued, true
	s.sent[stream] = min(s.sent[stream], issued)
	return nil
}

// issuedBound is the highest sequence of stream whose message id may have
// been sent in the current epoch: by this process, or up to what its
// previous check left, by anyone.
func (s *State) issuedBound(stream string) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return max(s.prior[stream], s.sent[stream])
}

// firstCheck reports whether this process has not checked stream yet.
func (s *State) firstCheck(stream string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.checked[stream]
}

// writeNow commits one change immediately; callers hold s.mu.
func (s *State) writeNow(fn func(tx *bolt.Tx) error) error {
	if s.readOnly {
		return ErrReadOnly
	}
	if s.db == nil {
		return errors.New("state.db is closed")
	}
	if err := s.db.Update(fn); err != nil {
		return fmt.Errorf("commit state db %s: %w", s.path, err)
	}
	return nil
}

// BootCount is how many times the agent has opened this store, this boot
// included.
func (s *State) BootCount() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.boots
}

// Cursor is the highest contiguous sequence of stream the hub acknowledged.
func (s *State) Cursor(stream string) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cursors[stream]
}

// SetCursor advances the cursor (batched). It never moves backwards: acks can
// arrive out of order and a late one must not cause a resend storm; use
// ResetCursor to replay.
func (s *State) SetCursor(stream string, seq uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if seq <= s.cursors[stream] {
		return
	}
	s.cursors[stream] = seq
	if !s.dirtyCursors[stream] {
		s.dirtyCursors[stream] = true
		s.dirty()
	}
}

// ResetCursor sets the cursor to seq, backwards too, and commits at once.
func (s *State) ResetCursor(stream string, seq uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.writeNow(func(tx *bolt.Tx) error { return tx.Bucket(bCursors).Put([]byte(stream), u64(seq)) }); err != nil {
		return err
	}
	s.cursors[stream] = seq
	return nil
}

// AddEvicted counts messages of stream that limits removed before the hub
// had them: data a technician must know was never forwarded.
func (s *State) AddEvicted(stream string, n uint64) {
	if n == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.evicted[stream] += n
	if !s.dirtyEvicted[stream] {
		s.dirtyEvicted[stream] = true
		s.dirty()
	}
}

// Evicted is the total AddEvicted for stream over the life of the store.
func (s *State) Evicted(stream string) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.evicted[stream]
}

// AddLinkEvent appends to the link history (the last 100 are kept).
func (s *State) AddLinkEvent(ev LinkEvent) {
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.links = append(s.links, ev)
	if len(s.links) > linkRingSize {
		s.links = append([]LinkEvent(nil), s.links[len(s.links)-linkRingSize:]...)
	}
	s.newLinks = append(s.newLinks, ev)
	s.dirty()
}

// LinkEvents returns the link history, oldest first.
func (s *State) LinkEvents() []LinkEvent {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]LinkEvent(nil), s.links...)
}

// SetSensor records a sensor's last reading or error (batched).
func (s *State) SetSensor(name string, r SensorRecord) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sensors[name] = r
	if !s.dirtySensors[name] {
		s.dirtySensors[name] = true
		s.dirty()
	}
}

// Sensors returns every sensor's last record.
func (s *State) Sensors() map[string]SensorRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]SensorRecord, len(s.sensors))
	for k, v := range s.sensors {
		out[k] = v
	}
	return out
}

// PutJSON stores a small record under key (batched with the rest).
func (s *State) PutJSON(key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("state record %q: %w", key, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.misc[key] = b
	if !s.dirtyMisc[key] {
		s.dirtyMisc[key] = true
		s.dirty()
	}
	return nil
}

// GetJSON decodes the record under key into v; false if there is none.
func (s *State) GetJSON(key string, v any) (bool, error) {
	s.mu.Lock()
	b, ok := s.misc[key]
	s.mu.Unlock()
	if !ok {
		return false, nil
	}
	if err := json.Unmarshal(b, v); err != nil {
		return true, fmt.Errorf("state record %q: %w", key, err)
	}
	return true, nil
}

// AddEvent records a recovery (logged by the caller) for status; it is kept
// in state.db so status can show it after the daemon stopped.
func (s *State) AddEvent(kind, detail string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ev := StateEvent{Time: time.Now(), Boot: s.boots, Kind: kind, Detail: detail}
	s.events = append(s.events, ev)
	if len(s.events) > eventRingSize {
		s.events = append([]StateEvent(nil), s.events[len(s.events)-eventRingSize:]...)
	}
	s.newEvents = append(s.newEvents, ev)
	s.dirty()
}

// Events returns the recoveries of the current boot (read-only: of the last
// boot the store recorded), oldest first.
func (s *State) Events() []StateEvent {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []StateEvent
	for _, e := range s.events {
		if e.Boot == s.boots {
			out = append(out, e)
		}
	}
	return out
}
