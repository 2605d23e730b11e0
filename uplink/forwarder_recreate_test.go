package uplink

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edge-agent/edge-agent/buffer"
	"github.com/edge-agent/edge-agent/internal/testkit"
	"github.com/nats-io/nats.go/jetstream"
)

// A local stream deleted while the forwarder runs is recreated by the
// buffer (create, then check against state.db). Between the two the new
// stream takes readings while state.db still has the deleted stream's
// message ids: sent then, they would reuse ids the hub already has and be
// dropped there as duplicates, counted as forwarded. The forwarder holds
// the lane until the check adopted the new stream: every reading, before
// and after the recreate, reaches the hub exactly once.
func TestForwarderRecreatedStreamWaitsForItsIDs(t *testing.T) {
	ctx := context.Background()
	e := newFwEnv(t, "site1", fwEnvOpts{})
	bc := buffer.DefaultConfig()
	_, err := buffer.OpenStreams(ctx, e.leafJS, e.st, bc, time.Now(), nil)
	if err != nil {
		t.Fatal(err)
	}
	e.leafUp()
	fw := e.start(nil)
	n := 0
	payloads := func(kind string) func() []byte {
		return func() []byte { n++; return fmt.Appendf(nil, "%s-%d", kind, n) }
	}
	e.publishEach("telemetry.t", 20, payloads("old"))
	e.waitCursor(buffer.StreamTelemetry, 20, 15*time.Second, "the old stream forwarded")

	e.recreateTelemetry()
	n = 0
	e.publishEach("telemetry.t", 10, payloads("new"))
	testkit.WaitFor(t, 30*time.Second, func() error {
		if s := fw.Status(); strings.Contains(s.LastError, "recreated") {
			return nil
		}
		if c := e.st.Cursor(buffer.StreamTelemetry); c == 10 {
			return nil // sent under the deleted stream's ids: the hub dropped them
		}
		return errors.New("the forwarder has not tried the recreated stream yet")
	})
	// The recreate's second step.
	if _, err := buffer.OpenStreams(ctx, e.leafJS, e.st, bc, time.Now(), nil); err != nil {
		t.Fatal(err)
	}
	e.publishEach("telemetry.t", 10, payloads("new"))

	e.checkReadings(fw, 20, 20)
}

// recreateTelemetry deletes the local TELEMETRY stream and creates it as
// the buffer's recreate does first: the new stream takes readings, and
// state.db does not know it until the check that follows (OpenStreams).
func (e *fwEnv) recreateTelemetry() {
	e.t.Helper()
	ctx := context.Background()
	if err := e.leafJS.DeleteStream(ctx, buffer.StreamTelemetry); err != nil {
		e.t.Fatal(err)
	}
	// nats-server removes the directory after it answers: a stream created
	// meanwhile would lose its files.
	testkit.WaitFor(e.t, 5*time.Second, func() error {
		if m, _ := filepath.Glob(filepath.Join(e.leafDir, "jetstream", "*", "streams", buffer.StreamTelemetry)); len(m) > 0 {
			return errors.New("the deleted stream is still on disk")
		}
		return nil
	})
	if err := buffer.EnsureStreams(ctx, e.leafJS, buffer.DefaultConfig()); err != nil {
		e.t.Fatal(err)
	}
}

// checkReadings waits until the hub holds the readings old-1..old-nOld and
// new-1..new-nNew and asserts each is there once.
func (e *fwEnv) checkReadings(fw *runningFw, nOld, nNew int) {
	e.t.Helper()
	want := map[string]bool{}
	for i := 1; i <= nOld; i++ {
		want[fmt.Sprintf("old-%d", i)] = true
	}
	for i := 1; i <= nNew; i++ {
		want[fmt.Sprintf("new-%d", i)] = true
	}
	testkit.WaitFor(e.t, 30*time.Second, func() error {
		if got := e.hubCount(); got < uint64(len(want)) {
			return fmt.Errorf("the hub holds %d readings, want %d (status %+v)", got, len(want), fw.Status())
		}
		return nil
	})
	seen := map[string]int{}
	for _, m := range e.hubMsgs() {
		seen[string(m.Data())]++
	}
	for p := range want {
		if seen[p] != 1 {
			e.t.Errorf("reading %s is at the hub %d times, want once", p, seen[p])
		}
	}
	if len(seen) != len(want) {
		e.t.Errorf("the hub holds %d distinct readings, want %d", len(seen), len(want))
	}
}

// The stream can also be replaced between the lane's check (openLane) and
// its reader's consumer, which is made on whatever stream has the name
// then: the reader notices and the session retries, held until the check
// adopted the new stream.
func TestForwarderStreamRecreatedWhileLaneOpens(t *testing.T) {
	ctx := context.Background()
	e := newFwEnv(t, "site1", fwEnvOpts{})
	bc := buffer.DefaultConfig()
	if _, err := buffer.OpenStreams(ctx, e.leafJS, e.st, bc, time.Now(), nil); err != nil {
		t.Fatal(err)
	}
	e.leafUp()
	n := 0
	payload := func(kind string) func() []byte {
		return func() []byte { n++; return fmt.Appendf(nil, "%s-%d", kind, n) }
	}
	e.publishEach("telemetry.t", 20, payload("old"))
	first := e.start(nil)
	e.waitCursor(buffer.StreamTelemetry, 20, 15*time.Second, "the old stream forwarded")
	first.stop()

	// The second forwarder's TELEMETRY reader waits, its lane checked,
	// while the stream is replaced and takes new readings.
	var armed atomic.Bool
	armed.Store(true)
	opening, replaced := make(chan struct{}), make(chan struct{})
	fw := e.start(nil, func(o *options) {
		inner := o.read
		o.read = func(ctx context.Context, str jetstream.Stream, from uint64, deliver func(jetstream.Msg) bool) error {
			if str.CachedInfo().Config.Name == buffer.StreamTelemetry && armed.CompareAndSwap(true, false) {
				close(opening)
				select {
				case <-replaced:
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			return inner(ctx, str, from, deliver)
		}
	})
	<-opening
	e.recreateTelemetry()
	n = 0
	e.publishEach("telemetry.t", 10, payload("new"))
	close(replaced)
	testkit.WaitFor(t, 15*time.Second, func() error {
		if strings.Contains(fw.Status().LastError, "recreated") {
			return nil
		}
		return fmt.Errorf("the forwarder reads the recreated stream without noticing (status %+v)", fw.Status())
	})
	if _, err := buffer.OpenStreams(ctx, e.leafJS, e.st, bc, time.Now(), nil); err != nil {
		t.Fatal(err)
	}
	e.publishEach("telemetry.t", 10, payload("new"))
	e.checkReadings(fw, 20, 20)
}
