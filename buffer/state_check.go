package buffer

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"time"

	bolt "go.etcd.io/bbolt"
)

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
	case string(bMeta):
		// Raw strings and big-endian counts, read by load.
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
	default:
		// misc and the other features' records (records.go): their owners
		// decode them, the store knows they are JSON.
		if !json.Valid(v) {
			err = errors.New("not JSON")
		}
	}
	if err != nil {
		return fmt.Errorf("bucket %s key %q: %w", bucket, k, err)
	}
	return nil
}
