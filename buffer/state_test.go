package buffer

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func openTestState(t *testing.T, path string) *State {
	t.Helper()
	s, err := OpenState(path, nil)
	if err != nil {
		t.Fatalf("OpenState: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// reopenReadOnly closes s, whose file is path, and opens the file again
// read-only (what `edge-agent status` does while the daemon is down),
// closed when the test ends.
func reopenReadOnly(t *testing.T, s *State, path string) *State {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := OpenStateReadOnly(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

func TestStateIdentityAndBoots(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s := openTestState(t, path)
	id := s.StoreID()
	if len(id) != 16 || s.BootCount() != 1 {
		t.Fatalf("fresh store: id %q boots %d", id, s.BootCount())
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := openTestState(t, path)
	if s2.StoreID() != id || s2.BootCount() != 2 {
		t.Fatalf("reopen: id %q (want %q) boots %d (want 2)", s2.StoreID(), id, s2.BootCount())
	}
	other := openTestState(t, filepath.Join(t.TempDir(), "state.db"))
	if other.StoreID() == id {
		t.Fatal("two stores got the same id")
	}
}

func TestStateCursors(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s := openTestState(t, path)
	s.SetCursor("TELEMETRY", 10)
	s.SetCursor("TELEMETRY", 7) // late ack: ignored
	if got := s.Cursor("TELEMETRY"); got != 10 {
		t.Fatalf("cursor moved backwards to %d", got)
	}
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := s.ResetCursor("TELEMETRY", 3); err != nil {
		t.Fatal(err)
	}
	s.SetCursor("ALERTS", 5)
	s.Close()
	s = openTestState(t, path)
	if s.Cursor("TELEMETRY") != 3 || s.Cursor("ALERTS") != 5 {
		t.Fatalf("after reopen: TELEMETRY %d (want 3) ALERTS %d (want 5)", s.Cursor("TELEMETRY"), s.Cursor("ALERTS"))
	}
}

// Writes are batched: nothing reaches the file before a flush, all of it
// after Run stops.
func TestStateBatchedByRun(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s := openTestState(t, path)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	for i := range 2000 {
		s.SetCursor("TELEMETRY", uint64(i+1))
		if err := s.WriteState("sensors", "temp", fmt.Appendf(nil, `{"errors":%d}`, i)); err != nil {
			t.Fatal(err)
		}
	}
	s.AddEvicted("TELEMETRY", 4)
	s.AddEvicted("TELEMETRY", 3)
	if err := s.PutJSON("status", map[string]int{"n": 1}); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	r := reopenReadOnly(t, s, path)
	var st map[string]int
	ok, err := r.GetJSON("status", &st)
	rec, _ := r.ReadState("sensors", "temp")
	if r.Cursor("TELEMETRY") != 2000 || r.Evicted("TELEMETRY") != 7 || string(rec) != `{"errors":1999}` || !ok || err != nil || st["n"] != 1 {
		t.Fatalf("not persisted: cursor %d evicted %d sensor %s status %v %v %v", r.Cursor("TELEMETRY"), r.Evicted("TELEMETRY"), rec, ok, err, st)
	}
	if ok, _ := r.GetJSON("missing", &st); ok {
		t.Fatal("GetJSON found a missing key")
	}
	if err := r.Flush(); err != nil {
		t.Fatalf("flush with nothing pending on a read-only state: %v", err)
	}
	r.SetCursor("X", 1)
	if err := r.Flush(); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("read-only flush: %v", err)
	}
}

func TestStateHistoryRing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s := openTestState(t, path)
	for i := range 250 {
		if err := s.AppendState("history", fmt.Appendf(nil, "%d", i), 100); err != nil {
			t.Fatal(err)
		}
		if i%70 == 0 {
			if err := s.Flush(); err != nil {
				t.Fatal(err)
			}
		}
	}
	check := func(recs [][]byte) {
		t.Helper()
		if len(recs) != 100 || string(recs[0]) != "150" || string(recs[99]) != "249" {
			t.Fatalf("ring: %d records, first %s last %s", len(recs), recs[0], recs[len(recs)-1])
		}
	}
	check(s.History("history"))
	s.Close()
	s = openTestState(t, path)
	check(s.History("history"))
	if err := s.WriteState("cursors", "x", []byte("1")); err == nil {
		t.Fatal("a record was written into the buffer's cursors bucket")
	}
	if err := s.WriteState("history", "x", []byte("{")); err == nil {
		t.Fatal("a record that is not JSON was accepted")
	}
}

func TestStateReadOnlyWhileLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s := openTestState(t, path)
	s.SetCursor("ALERTS", 9)
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	_, err := OpenStateReadOnly(path)
	if !errors.Is(err, errLocked) || !strings.Contains(err.Error(), "edge-agent status") {
		t.Fatalf("read-only open of a locked db: %v", err)
	}
	if _, err := OpenStateReadOnly(filepath.Join(t.TempDir(), "state.db")); err == nil || !strings.Contains(err.Error(), "ever run") {
		t.Fatalf("missing db: %v", err)
	}
	r := reopenReadOnly(t, s, path)
	if r.Cursor("ALERTS") != 9 || r.BootCount() != 1 {
		t.Fatalf("read-only view: cursor %d boots %d", r.Cursor("ALERTS"), r.BootCount())
	}
	if err := r.Run(context.Background()); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("Run on read-only: %v", err)
	}
}

// populated builds a state.db with records in every bucket and returns its
// bytes and store id.
func populated(t *testing.T, path string) ([]byte, string) {
	t.Helper()
	s := openTestState(t, path)
	for i := range 300 {
		// What sensors and uplink write there (sensors.Record, uplink.LinkEvent).
		sensor := fmt.Appendf(nil, `{"last_read":"0001-01-01T00:00:00Z","last_error":%q,"errors":%d}`, strings.Repeat("e", 100), i)
		link := fmt.Appendf(nil, `{"time":%q,"kind":"disconnect","reason":"test"}`, time.Now().Format(time.RFC3339Nano))
		if err := errors.Join(s.WriteState("sensors", "sensor-"+strings.Repeat("x", i%20)+string(rune('a'+i%26)), sensor), s.AppendState("links", link, 100)); err != nil {
			t.Fatal(err)
		}
	}
	s.SetCursor("TELEMETRY", 42)
	id := s.StoreID()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b, id
}

// Every kind of damage ends the same way: the agent gets a working state,
// the damaged file is kept next to it for a post-mortem, and the event is
// there for status. Never a panic, never a hang.
func TestStateCorruptionMovedAside(t *testing.T) {
	dir := t.TempDir()
	good, goodID := populated(t, filepath.Join(dir, "good.db"))
	flip := func(off int) func([]byte) []byte {
		return func(b []byte) []byte { b[off] ^= 0x10; return b }
	}
	cases := []struct {
		name   string
		damage func([]byte) []byte
	}{
		{"garbage", func(b []byte) []byte { return []byte(strings.Repeat("not a bolt file ", 500)) }},
		{"empty", func(b []byte) []byte { return nil }},
		{"truncated to 3 pages", func(b []byte) []byte { return b[:3*4096] }},
		{"truncated mid-file", func(b []byte) []byte { return b[:len(b)/2] }},
		{"both meta pages flipped", func(b []byte) []byte { b[0x20] ^= 1; b[4096+0x20] ^= 1; return b }},
		{"page header flipped", flip(2*4096 + 8)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sub := t.TempDir()
			path := filepath.Join(sub, "state.db")
			if err := os.WriteFile(path, c.damage(append([]byte(nil), good...)), 0o640); err != nil {
				t.Fatal(err)
			}
			s := openTestState(t, path)
			evs := s.Events()
			if len(evs) != 1 || evs[0].Kind != EventStateCorrupt {
				t.Fatalf("events: %+v", evs)
			}
			aside, _ := filepath.Glob(path + ".corrupt-*")
			if len(aside) != 1 || !strings.Contains(evs[0].Detail, filepath.Base(aside[0])) {
				t.Fatalf("moved-aside file %v not named in %q", aside, evs[0].Detail)
			}
			if s.StoreID() == goodID || s.BootCount() != 1 || s.Cursor("TELEMETRY") != 0 {
				t.Fatalf("not a fresh store: id %s boots %d", s.StoreID(), s.BootCount())
			}
			// The fresh store works and remembers the event across a restart.
			s.SetCursor("TELEMETRY", 1)
			r := reopenReadOnly(t, s, path)
			if evs := r.Events(); len(evs) != 1 || r.Cursor("TELEMETRY") != 1 {
				t.Fatalf("fresh store after reopen: events %+v cursor %d", evs, r.Cursor("TELEMETRY"))
			}
		})
	}
}

// A bit flip anywhere must never crash the agent: every page of a real file
// gets a flip in its header and in its body; each open either keeps the data
// (the flip hit something unused) or moves the file aside.
func TestStateBitFlipsNeverCrash(t *testing.T) {
	dir := t.TempDir()
	good, goodID := populated(t, filepath.Join(dir, "good.db"))
	var kept, aside int
	for off := 0; off < len(good); off += 1024 + 13 {
		path := filepath.Join(dir, "state.db")
		os.Remove(path)
		b := append([]byte(nil), good...)
		b[off] ^= 0x04
		if err := os.WriteFile(path, b, 0o640); err != nil {
			t.Fatal(err)
		}
		s, err := OpenState(path, nil)
		if err != nil {
			t.Fatalf("flip at %d: %v", off, err)
		}
		switch {
		case len(s.Events()) == 0 && s.StoreID() == goodID:
			kept++
		case len(s.Events()) == 1 && s.StoreID() != goodID:
			aside++
		default:
			t.Errorf("flip at %d: inconsistent result: id %s events %+v", off, s.StoreID(), s.Events())
		}
		s.Close()
	}
	t.Logf("%d flips harmless, %d detected and moved aside", kept, aside)
	if aside == 0 {
		t.Fatal("no flip was detected: the check does not work")
	}
}

// idFor finds the epoch a sequence falls in; the first epoch also covers
// what comes before it.
func TestEpochLookup(t *testing.T) {
	l := laneIDs{Epochs: []Epoch{{From: 5, ID: "a"}, {From: 10, ID: "b"}, {From: 11, ID: "c"}, {From: 40, ID: "d"}}}
	for seq, want := range map[uint64]string{1: "a", 5: "a", 9: "a", 10: "b", 11: "c", 39: "c", 40: "d", 1 << 60: "d"} {
		if got := l.idFor(seq); got != want {
			t.Errorf("seq %d: epoch %s, want %s", seq, got, want)
		}
	}
}
