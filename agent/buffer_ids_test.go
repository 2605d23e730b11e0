package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/edge-agent/edge-agent/buffer"
	"github.com/edge-agent/edge-agent/internal/testkit"
)

// Exactly-once across a lost state.db and a damaged block file, end to end:
// a real hub, the agent's forwarder, payloads with ids so the hub side is
// judged by what the local app published, not by sequence numbers.

// hubPayloads reads the hub stream: payload id -> the Nats-Msg-Ids it
// arrived under (more than one is a duplicate).
func hubPayloads(t *testing.T, js jetstream.JetStream) map[string][]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	n := fwdHubCount(js)
	c, err := js.OrderedConsumer(ctx, "EDGE", jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for range n {
		m, err := c.Next(jetstream.FetchMaxWait(10 * time.Second))
		if err != nil {
			t.Fatalf("read hub stream: %v", err)
		}
		var p struct{ ID string }
		if err := json.Unmarshal(m.Data(), &p); err != nil || p.ID == "" {
			t.Fatalf("hub message %q is not a test payload", m.Data())
		}
		out[p.ID] = append(out[p.ID], m.Headers().Get(nats.MsgIdHdr))
	}
	return out
}

// checkHubOnce fails unless the hub holds payloads p-0..p-(n-1) exactly
// once each and nothing else.
func checkHubOnce(t *testing.T, js jetstream.JetStream, n int) map[string][]string {
	t.Helper()
	got := hubPayloads(t, js)
	var missing, dup []string
	for i := range n {
		switch ids := got[fmt.Sprintf("p-%d", i)]; {
		case len(ids) == 0:
			missing = append(missing, fmt.Sprintf("p-%d", i))
		case len(ids) > 1:
			dup = append(dup, fmt.Sprintf("p-%d %v", i, ids))
		}
	}
	if len(missing) > 0 || len(dup) > 0 || len(got) != n {
		t.Fatalf("hub: %d payloads (want %d), %d missing %v, %d duplicated %v", len(got), n, len(missing), head(missing), len(dup), head(dup))
	}
	return got
}

func head(s []string) []string { return s[:min(len(s), 5)] }

// idsSite is a hub with the EDGE stream and a site forwarding to it, its
// state in dir and every reading synced.
type idsSite struct {
	hub  *server.Server
	hjs  jetstream.JetStream
	dir  string
	body string
}

func newIDsSite(t *testing.T) *idsSite {
	t.Helper()
	hub, hjs := startHub(t, nil, edgeStream)
	body := fmt.Sprintf("buffer: {sync: always}\nuplink:\n  hub_urls: [%s]\n", leafURL(t, hub, "nats"))
	return &idsSite{hub: hub, hjs: hjs, dir: t.TempDir(), body: body}
}

// start runs the site's agent on its dir and waits for its leaf.
func (s *idsSite) start(t *testing.T) *testAgent {
	t.Helper()
	a := agentOn(t, s.dir, s.body)
	leafUp(t, s.hub, a)
	return a
}

// forwardAll starts the site, publishes p-from..p-(to-1) and waits until
// the hub acknowledged all of the TELEMETRY stream.
func (s *idsSite) forwardAll(t *testing.T, from, to int) *testAgent {
	t.Helper()
	a := s.start(t)
	publishAll(t, a, from, to)
	return a
}

// publishAll stores payloads p-from..p-(to-1) in the agent's local buffer
// and waits until the hub acknowledged all of the TELEMETRY stream.
func publishAll(t *testing.T, a *testAgent, from, to int) {
	t.Helper()
	publishAsync(t, a, "telemetry.t", from, to, func(i int) []byte { return fmt.Appendf(nil, `{"id":"p-%d"}`, i) })
	last := streamLast(t, a)
	testkit.WaitFor(t, time.Minute, func() error {
		if a.State().Cursor(buffer.StreamTelemetry) != last {
			return errors.New("still waiting for hub acknowledged everything")
		}
		return nil
	})
}

func streamLast(t *testing.T, a *testAgent) uint64 {
	t.Helper()
	return telemetryState(context.Background(), t, localJS(t, a)).LastSeq
}

// A corrupt state.db is moved aside; the store id, id epochs and cursors
// come back from the JetStream store, so nothing is resent (the stop was
// clean, the backup exact) and nothing reaches the hub twice. Before, the
// fresh state.db had a new store id and cursor 0: everything was resent
// under ids the hub had never seen.
func TestBufferCorruptStateDBNoDuplicates(t *testing.T) {
	s := newIDsSite(t)
	a := s.forwardAll(t, 0, 300)
	storeID := a.State().StoreID()
	if err := a.stop(); err != nil {
		t.Fatal(err)
	}
	// Garbage over both bbolt meta pages: unusable whatever the rest holds.
	f, err := os.OpenFile(filepath.Join(s.dir, "state.db"), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	junk := make([]byte, 8192)
	for i := range junk {
		junk[i] = byte(rand.IntN(256))
	}
	if _, err := f.WriteAt(junk, 0); err != nil {
		t.Fatal(err)
	}
	f.Close()

	b := s.forwardAll(t, 300, 500)
	if b.State().StoreID() != storeID {
		t.Fatalf("store id %s after the restore, want %s", b.State().StoreID(), storeID)
	}
	var kinds []buffer.EventKind
	for _, e := range b.BufferHealth().Events {
		kinds = append(kinds, e.Kind)
	}
	if !slices.Contains(kinds, buffer.EventStateCorrupt) || !slices.Contains(kinds, buffer.EventStateRestored) {
		t.Fatalf("events %v: the technician must see the recovery", kinds)
	}
	checkHubOnce(t, s.hjs, 500)
	if n := b.ForwarderStatus().Forwarded[buffer.StreamTelemetry]; n != 200 {
		t.Fatalf("forwarded %d after the restart, want the 200 new ones only", n)
	}
}

func telemetryBlocks(dir string) string {
	return filepath.Join(dir, "jetstream", "$G", "streams", buffer.StreamTelemetry, "msgs")
}

// block is the TELEMETRY stream's one block file in the store dir, and
// its size.
func block(t *testing.T, dir string) (string, int64) {
	t.Helper()
	blks, _ := filepath.Glob(filepath.Join(telemetryBlocks(dir), "*.blk"))
	if len(blks) != 1 {
		t.Fatalf("want one TELEMETRY block, have %v", blks)
	}
	fi, err := os.Stat(blks[0])
	if err != nil {
		t.Fatal(err)
	}
	return blks[0], fi.Size()
}

// dropIndex removes TELEMETRY's index.db, as a crash leaves it stale.
func dropIndex(t *testing.T, dir string) {
	t.Helper()
	if err := os.Remove(filepath.Join(telemetryBlocks(dir), "index.db")); err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
}

// truncateTelemetry cuts TELEMETRY's block in half without its index:
// nats-server rebuilds the stream up to the cut.
func truncateTelemetry(t *testing.T, dir string) {
	t.Helper()
	p, size := block(t, dir)
	if err := os.Truncate(p, size/2); err != nil {
		t.Fatal(err)
	}
	dropIndex(t, dir)
}

// Damage to the newest TELEMETRY block, after everything reached the hub:
// what survives is not resent, new readings reach the hub (the forwarder is
// not stuck), nothing arrives twice. Without the stream's index (a crash
// leaves it stale) nats-server rebuilds the stream up to the damage and the
// sequence goes back: new readings reuse sequences and must get a new id
// epoch (every start draws one for what comes after the end anyway).
func TestBufferDamagedBlockExactlyOnce(t *testing.T) {
	flip := func(t *testing.T, dir string) {
		p, size := block(t, dir)
		f, err := os.OpenFile(p, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		b := make([]byte, 64)
		if _, err := f.ReadAt(b, size/2); err != nil {
			t.Fatal(err)
		}
		for i := range b {
			b[i] ^= 0x5a
		}
		if _, err := f.WriteAt(b, size/2); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, dir string)
	}{
		{"truncated", truncateTelemetry},
		{"bit-flip", func(t *testing.T, dir string) { flip(t, dir); dropIndex(t, dir) }},
		{"bit-flip-indexed", flip},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newIDsSite(t)
			a := s.forwardAll(t, 0, 300)
			old := a.State().MsgIDPrefix(buffer.StreamTelemetry, 300)
			if err := a.stop(); err != nil {
				t.Fatal(err)
			}
			tc.damage(t, s.dir)

			b := agentOn(t, s.dir, s.body)
			end := streamLast(t, b)
			leafUp(t, s.hub, b)
			publishAll(t, b, 300, 500)
			var damaged bool
			for _, e := range b.BufferHealth().Events {
				damaged = damaged || (e.Kind == buffer.EventStreamDamaged && strings.Contains(e.Detail, buffer.StreamTelemetry))
			}
			if !damaged {
				t.Fatalf("damage not reported: %+v\n%s", b.BufferHealth().Events, b.logs)
			}
			got := checkHubOnce(t, s.hjs, 500)
			if n := b.ForwarderStatus().Forwarded[buffer.StreamTelemetry]; n != 200 {
				t.Fatalf("forwarded %d after the damage, want the 200 new ones only", n)
			}
			if newID := got["p-300"][0]; strings.Contains(newID, "."+old+".") {
				t.Fatalf("stream ended at %d after the damage; first new reading's id %s is in the old epoch %s", end, newID, old)
			}
		})
	}
}

// A start whose check of the streams never commits (the agent stopped, or
// the check failed, after READY) leaves the readings local apps stored
// meanwhile unchecked. The next start must take them for new ones, not
// for what its store held before it opened: here the store was cut below
// the cursor, so they took sequences the hub acknowledged for others, and
// judged as restored they were never sent (the start's check-pending
// record keeps the end the unfinished start saw).
func TestBufferCheckInterruptedAfterReady(t *testing.T) {
	s := newIDsSite(t)
	a := s.forwardAll(t, 0, 300)
	if err := a.stop(); err != nil {
		t.Fatal(err)
	}
	truncateTelemetry(t, s.dir)

	hold, _ := checkHold(t)
	b, err := launchHolding(t, configIn(t, s.dir, s.body), hold)
	if err != nil {
		t.Fatalf("agent failed to start: %v\n%s", err, b.logs)
	}
	publishAsync(t, b, "telemetry.t", 300, 400, func(i int) []byte { return fmt.Appendf(nil, `{"id":"p-%d"}`, i) })
	// Stopped while the check is held: it then runs on a cancelled
	// context and commits nothing, as if the process had died first.
	if err := b.stop(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-b.Checked():
		t.Fatal("the held check ran to its end after the stop")
	default:
	}

	c := s.start(t)
	publishAll(t, c, 400, 500)
	checkHubOnce(t, s.hjs, 500)
}

// Readings gone from a stream's head while the agent was stopped (its
// first block file removed) are the start's check's to judge, not an
// eviction by buffer limits: the watcher's first round measures from the
// marks that check left, not from the ones before it.
func TestBufferHeadGoneWhileStoppedIsNoEviction(t *testing.T) {
	dir := t.TempDir()
	const body = "buffer: {sync: 1s, max_bytes: 8MiB}\n"
	a := agentOn(t, dir, body)
	publishAsync(t, a, "telemetry.t", 0, 6000, func(int) []byte { return make([]byte, 1024) })
	if err := a.stop(); err != nil {
		t.Fatal(err)
	}
	blks, _ := filepath.Glob(filepath.Join(telemetryBlocks(dir), "*.blk"))
	if len(blks) < 2 {
		t.Fatalf("want several TELEMETRY blocks, have %v", blks)
	}
	slices.SortFunc(blks, cmpLen)
	if err := os.Remove(blks[0]); err != nil {
		t.Fatal(err)
	}
	dropIndex(t, dir)

	b := agentOn(t, dir, body)
	first := telemetryState(context.Background(), t, localJS(t, b)).FirstSeq
	if first <= 1 {
		t.Fatalf("TELEMETRY starts at seq %d after its first block was removed", first)
	}
	if n := b.State().Evicted(buffer.StreamTelemetry); n != 0 {
		t.Fatalf("%d readings counted as evicted by limits; the head (seq 1..%d) went while the agent was stopped\n%s", n, first-1, b.logs)
	}
}
