package buffer

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
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
	eventRingSize = 50
	// openTimeout bounds waiting for bbolt's flock: a second process holding
	// state.db must produce an error, never a hang.
	openTimeout = time.Second
	// checkTimeout bounds validating a possibly corrupt file: bbolt can loop
	// or panic on garbage, and a start must never hang on it.
	checkTimeout = 10 * time.Second
)

// The buffer's bucket names in state.db; part of the on-disk format, never
// renamed. misc and events are kept in memory as records (records.go), as
// is every bucket not named here: other features' records.
var (
	bMeta    = []byte("meta")
	bCursors = []byte("cursors")
	bEvicted = []byte("evicted")
	bMisc    = []byte("misc")   // key -> JSON (PutJSON)
	bEvents  = []byte("events") // big-endian sequence -> StateEvent JSON, a ring
	bIDs     = []byte("ids")    // stream -> laneIDs JSON
	bAge     = []byte("age")    // big-endian key -> AgeCheckpoint JSON, oldest first (see age.go)
	allBkts  = [][]byte{bMeta, bCursors, bEvicted, bMisc, bEvents, bIDs, bAge}
	// bIssued held a durable bound of the message ids sent, from before
	// every start drew a new epoch; older files still have it (validated,
	// never read).
	bIssued = []byte("issued")
)

// ErrReadOnly is returned by writes on a state opened with OpenStateReadOnly.
var ErrReadOnly = errors.New("state.db is open read-only")

// State is state.db: identity, boot count, forwarder cursors, message-id
// epochs, recovery events, and the keyed records other features keep there
// (records.go). Reads come from memory; writes are kept in memory and
// committed in batches by Run (or Flush), except ResetCursor, epochs and
// identity, which are committed at once.
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
	// recs holds every record bucket (bucket -> key -> JSON), the
	// buffer's misc and events included; dirtyRecs the keys to write (or,
	// absent from recs, delete) at the next flush.
	recs      map[string]map[string][]byte
	dirtyRecs map[string]map[string]bool
	ids       map[string]laneIDs
	// sent is the highest sequence per stream whose message id this
	// process handed out; prior is the end checkStreams left (ids up to it
	// may have been sent by anyone). checked holds the streams this
	// process checked: the first check always draws a new epoch.
	sent    map[string]uint64
	prior   map[string]uint64
	checked map[string]bool
	// backup is where the flusher mirrors cursors (EDGE_AGENT_STATE), set
	// by checkStreams; backedUp is what it holds.
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

func newState(path string, log *slog.Logger, db *bolt.DB, ro bool) *State {
	return &State{
		path: path, log: log, db: db, readOnly: ro,
		cursors: map[string]uint64{}, evicted: map[string]uint64{},
		recs: map[string]map[string][]byte{}, dirtyRecs: map[string]map[string]bool{},
		ids: map[string]laneIDs{}, sent: map[string]uint64{}, prior: map[string]uint64{}, checked: map[string]bool{},
		backedUp:     map[string]cursorRecord{},
		dirtyCursors: map[string]bool{}, dirtyEvicted: map[string]bool{}, dirtyAge: map[uint64]bool{},
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
		s.loadRecords(tx)
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
		if err := s.flushAge(tx.Bucket(bAge)); err != nil {
			return err
		}
		return s.flushRecords(tx)
	})
	if err != nil {
		return fmt.Errorf("commit state db %s: %w", s.path, err)
	}
	clear(s.dirtyCursors)
	clear(s.dirtyEvicted)
	clear(s.dirtyAge)
	clear(s.dirtyRecs)
	s.dirtyN = 0
	return nil
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
