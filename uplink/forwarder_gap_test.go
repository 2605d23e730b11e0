package uplink

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// readerHook wraps the forwarder's stream reader: on reads from every
// session it calls hook for each message before it reaches the session;
// hook returns false to lose the message (as a reader that dropped a
// delivery would).
func readerHook(hook func(m jetstream.Msg) bool) Option {
	return func(o *options) {
		inner := o.read
		o.read = func(ctx context.Context, str jetstream.Stream, from uint64, deliver func(jetstream.Msg) bool) error {
			return inner(ctx, str, from, func(m jetstream.Msg) bool {
				if !hook(m) {
					return true
				}
				return deliver(m)
			})
		}
	}
}

func streamSeq(t testing.TB, m jetstream.Msg) uint64 {
	meta, err := m.Metadata()
	if err != nil {
		t.Error(err)
		return 0
	}
	return meta.Sequence.Stream
}

// A reader that loses a stored message must not move the cursor past it:
// the session ends, the next one resends from the cursor and the message
// reaches the hub; nothing is counted as evicted.
func TestForwarderReaderSkipNotEvicted(t *testing.T) {
	e := newFwEnv(t, "s1", fwEnvOpts{})
	e.leafUp()
	const n, lost = 100, 50
	e.publish("telemetry.x", n, []byte("x"))
	var mu sync.Mutex
	drops := 0
	logs := &fwLog{}
	e.start(logs.logger(), readerHook(func(m jetstream.Msg) bool {
		mu.Lock()
		defer mu.Unlock()
		if streamSeq(t, m) == lost && drops == 0 {
			drops++
			return false
		}
		return true
	}))
	e.waitCursor("TELEMETRY", n, 30*time.Second, "cursor at the end")
	mu.Lock()
	if drops != 1 {
		t.Fatalf("the reader dropped %d messages, want 1", drops)
	}
	mu.Unlock()
	e.checkExactlyOnce(e.hubMsgs(), "TELEMETRY", "telemetry.x", 1, n)
	if got := e.st.Evicted("TELEMETRY"); got != 0 {
		t.Fatalf("evicted = %d: a skipped message that is still stored was counted as evicted", got)
	}
	if want := "reader skipped seq 50, which is still stored"; !strings.Contains(logs.String(), want) {
		t.Fatalf("log lacks %q:\n%s", want, logs)
	}
	if strings.Contains(logs.String(), "evicted by the buffer limits") {
		t.Fatalf("logged an eviction:\n%s", logs)
	}
}

// Readings the buffer limits evict while a session is reading (the
// forwarder is behind a busy stream at its max_msgs) are counted once and
// skipped; every reading still stored reaches the hub.
func TestForwarderEvictedWhileReading(t *testing.T) {
	e := newFwEnv(t, "s1", fwEnvOpts{})
	e.capTelemetry(10)
	e.leafUp()
	e.publish("telemetry.x", 10, []byte("x"))
	// The reader holds seq 1 until 2000 more readings evicted 1..2000:
	// more than it can have fetched meanwhile (one batch).
	const more, total = 2000, 2010
	held, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	logs := &fwLog{}
	e.start(logs.logger(), readerHook(func(m jetstream.Msg) bool {
		if streamSeq(t, m) == 1 {
			once.Do(func() { close(held); <-release })
		}
		return true
	}))
	select {
	case <-held:
	case <-time.After(30 * time.Second):
		t.Fatal("reader never delivered seq 1")
	}
	e.publish("telemetry.x", more, []byte("x"))
	if got := e.streamFirstSeq("TELEMETRY"); got != more+1 {
		t.Fatalf("local stream starts at %d, want %d", got, more+1)
	}
	close(release)
	e.waitCursor("TELEMETRY", total, 30*time.Second, "cursor at the end")
	msgs := e.hubMsgs()
	// What the reader had fetched before the eviction is forwarded (it
	// was read, only later evicted), the rest of 1..2000 is gone: each
	// reading is at the hub once or counted as evicted once, and the 10
	// still stored end the hub's copy.
	evicted := e.st.Evicted("TELEMETRY")
	if uint64(len(msgs))+evicted != total || evicted == 0 || len(msgs) < 11 {
		t.Fatalf("hub has %d readings and %d are counted evicted; want %d in all, some evicted", len(msgs), evicted, total)
	}
	// The head is in stream order with holes where readings went before
	// the reader got them: strictly increasing from seq 1.
	var last uint64
	for i, m := range msgs[:len(msgs)-10] {
		seq := streamSeqOf(t, m.Headers().Get(HdrSeq))
		if (i == 0 && seq != 1) || seq <= last || seq > more {
			t.Fatalf("hub reading %d has Edge-Seq %d after %d", i, seq, last)
		}
		last = seq
	}
	e.checkExactlyOnce(msgs[len(msgs)-10:], "TELEMETRY", "telemetry.x", more+1, total)
	if strings.Contains(logs.String(), "reader skipped") {
		t.Fatalf("an eviction was taken for a reader skip:\n%s", logs)
	}
	if !strings.Contains(logs.String(), "evicted by the buffer limits") {
		t.Fatalf("no eviction logged:\n%s", logs)
	}
}

func (e *fwEnv) streamFirstSeq(name string) uint64 {
	e.t.Helper()
	s, err := e.leafJS.Stream(context.Background(), name)
	if err != nil {
		e.t.Fatal(err)
	}
	return s.CachedInfo().State.FirstSeq
}

func streamSeqOf(t testing.TB, hdr string) uint64 {
	t.Helper()
	seq, err := strconv.ParseUint(hdr, 10, 64)
	if err != nil {
		t.Fatalf("Edge-Seq %q: %v", hdr, err)
	}
	return seq
}
