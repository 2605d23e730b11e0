package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/edge-agent/edge-agent/buffer"
	"github.com/edge-agent/edge-agent/internal/powercut"
	"github.com/edge-agent/edge-agent/internal/testkit"
)

// agentOn runs an agent from configIn(dir, body).
func agentOn(t *testing.T, dir, body string) *testAgent {
	t.Helper()
	return runAgent(t, configIn(t, dir, body))
}

// fill writes a file until the filesystem is full.
func fill(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("filling the disk: %v", err)
			}
			break
		}
	}
	// Small writes take the last partial blocks too.
	for {
		if _, err := f.Write(buf[:512]); err != nil {
			break
		}
	}
	_ = f.Sync()
}

// Disk full: the agent keeps running and says so, local publishes fail fast
// instead of hanging, nothing acknowledged is lost, and once space is freed
// publishing resumes by itself (the watcher restarts JetStream when
// nats-server left a stream stuck on its write error or disabled it).
func TestBufferDiskFull(t *testing.T) {
	if err := powercut.Available(); err != nil {
		t.Skip(err)
	}
	dir := t.TempDir()
	disk, err := powercut.Create(filepath.Join(dir, "disk.img"), filepath.Join(dir, "mnt"), 48<<20)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = disk.Close() })
	a := agentOn(t, filepath.Join(disk.Dir, "state"), "buffer:\n  max_bytes: 64MiB\n")
	js := localJS(t, a)
	ctx := context.Background()

	var acked []uint64
	pub := func(timeout time.Duration) error {
		c, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		ack, err := js.Publish(c, "telemetry.door", make([]byte, 1024))
		if err == nil {
			acked = append(acked, ack.Sequence)
		}
		return err
	}
	for range 200 {
		if err := pub(5 * time.Second); err != nil {
			t.Fatal(err)
		}
	}
	filler := filepath.Join(disk.Dir, "filler")
	fill(t, filler)

	// Publishing into a full disk: errors, each within its timeout.
	var pubErr error
	for i := 0; i < 20000 && pubErr == nil; i++ {
		pubErr = pub(5 * time.Second)
	}
	if pubErr == nil {
		t.Fatal("20000 more publishes succeeded on a full disk")
	}
	t.Logf("publish on a full disk: %v (after %d acked)", pubErr, len(acked))
	testkit.WaitFor(t, 30*time.Second, func() error {
		if !a.BufferHealth().DiskFull {
			return errors.New("still waiting for health to say disk full")
		}
		return nil
	})
	if h := a.BufferHealth(); !h.Degraded() {
		t.Fatalf("disk full but not degraded: %+v", h)
	}
	start := time.Now()
	if err := pub(5 * time.Second); err == nil {
		t.Fatal("publish succeeded while the disk is still full")
	}
	if d := time.Since(start); d > 6*time.Second {
		t.Fatalf("publish on a full disk hung for %s", d)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 60*time.Second, func() error {
		if pub(2*time.Second) != nil {
			return errors.New("still waiting for publishing to resume after space was freed")
		}
		return nil
	})
	t.Logf("resumed %s after the space was freed", time.Since(start).Round(time.Second))
	for _, l := range strings.Split(a.logs.String(), "\n") {
		if strings.Contains(l, "component=buffer") || strings.Contains(l, "write error") {
			t.Log(l)
		}
	}
	testkit.WaitFor(t, 30*time.Second, func() error {
		h := a.BufferHealth()
		if !(!h.DiskFull && !h.JetStreamDisabled && len(h.WriteErrors) == 0) {
			return errors.New("still waiting for health to clear")
		}
		return nil
	})
	s, err := js.Stream(ctx, buffer.StreamTelemetry)
	if err != nil {
		t.Fatal(err)
	}
	for _, seq := range acked {
		if _, err := s.GetMsg(ctx, seq); err != nil {
			t.Fatalf("acknowledged message %d lost across the disk-full episode: %v", seq, err)
		}
	}
	kinds := map[buffer.EventKind]bool{}
	for _, e := range a.BufferHealth().Events {
		kinds[e.Kind] = true
	}
	if !kinds[buffer.EventDiskFull] || !kinds[buffer.EventDiskRecovered] {
		t.Fatalf("events do not tell the story: %+v", a.BufferHealth().Events)
	}
	if err := a.stop(); err != nil {
		t.Fatal(err)
	}
}

// copyFile is used to damage copies, never the live store.
func copyFile(t *testing.T, from, to string) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.Create(to)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	dst.Close()
}

// A corrupt state.db never keeps the agent down: it is moved aside, a fresh
// one starts with the cursor restored from the JetStream store, the
// JetStream data is untouched and status can tell.
func TestBufferCorruptStateDB(t *testing.T) {
	dir := t.TempDir()
	a := agentOn(t, dir, "")
	publishLocal(t, a, "telemetry.t", 25)
	a.State().SetCursor(buffer.StreamTelemetry, 10)
	if err := a.stop(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "state.db"), []byte(strings.Repeat("garbage!", 2000)), 0o640); err != nil {
		t.Fatal(err)
	}
	a = agentOn(t, dir, "")
	evs := a.BufferHealth().Events
	if len(evs) != 2 || evs[0].Kind != buffer.EventStateCorrupt || evs[1].Kind != buffer.EventStateRestored {
		t.Fatalf("events: %+v", evs)
	}
	if aside, _ := filepath.Glob(filepath.Join(dir, "state.db.corrupt-*")); len(aside) != 1 {
		t.Fatalf("corrupt file not kept: %v", aside)
	}
	if !strings.Contains(a.logs.String(), "state.db is corrupt") {
		t.Fatalf("not logged:\n%s", a.logs)
	}
	ls, err := a.BufferStats(context.Background())
	if err != nil || ls[1].Messages != 25 || ls[1].Cursor != 10 || ls[1].Backlog != 15 {
		t.Fatalf("JetStream data or backlog wrong after a fresh state.db: %+v %v", ls, err)
	}
	publishLocal(t, a, "telemetry.t", 1)
}

// publishLocal stores n readings on subject in the agent's local buffer.
// localJS is a JetStream handle on the agent's client port.
func localJS(t *testing.T, a *testAgent) jetstream.JetStream {
	t.Helper()
	return jsConnect(t, a.ClientURL())
}

func publishLocal(t *testing.T, a *testAgent, subject string, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	publishReadings(ctx, t, localJS(t, a), subject, n)
}

// A damaged JetStream block file (truncated or bit-flipped): the agent
// starts, serves, and reports which stream lost what, measured against
// state.db's last known extent.
func TestBufferDamagedBlockFile(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(b []byte) []byte
	}{
		{"truncated", func(b []byte) []byte { return b[:len(b)/2] }},
		{"bit flip", func(b []byte) []byte { b[len(b)/2] ^= 0x20; return b }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			a := agentOn(t, dir, "")
			publishLocal(t, a, "telemetry.t", 100)
			// The watcher's first check recorded the extent at start; one
			// more round records it after the burst, as it would within
			// WatchInterval in production.
			a.buf.watcher.Check(context.Background())
			if err := a.stop(); err != nil {
				t.Fatal(err)
			}
			blk := filepath.Join(dir, "jetstream", "$G", "streams", buffer.StreamTelemetry, "msgs", "1.blk")
			b, err := os.ReadFile(blk)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(blk, tc.damage(b), 0o640); err != nil {
				t.Fatal(err)
			}
			a = agentOn(t, dir, "")
			var damaged []buffer.StateEvent
			for _, e := range a.BufferHealth().Events {
				if e.Kind == buffer.EventStreamDamaged {
					damaged = append(damaged, e)
				}
			}
			ls, err := a.BufferStats(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("after damage: %+v; events %+v", ls[1], damaged)
			if ls[1].Messages < 100 {
				if len(damaged) != 1 || !strings.Contains(damaged[0].Detail, "TELEMETRY") || !strings.Contains(damaged[0].Detail, "before: seq 1..100") {
					t.Fatalf("%d messages left of 100 but the loss is not reported: %+v", ls[1].Messages, damaged)
				}
			}
			publishLocal(t, a, "telemetry.t", 5)
		})
	}
}

// TestBufferKill9Helper is the agent process TestBufferKill9 kills; it only
// runs as that child.
func TestBufferKill9Helper(t *testing.T) {
	dir := os.Getenv("EDGE_KILL9_DIR")
	if dir == "" {
		t.Skip("helper process for TestBufferKill9")
	}
	a := agentOn(t, dir, "")
	if err := os.WriteFile(filepath.Join(dir, "url"), []byte(a.ClientURL()), 0o644); err != nil {
		t.Fatal(err)
	}
	select {}
}

// kill -9 in the middle of a burst of acknowledged publishes: after a
// restart every acknowledged message is in the stream.
func TestBufferKill9(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestBufferKill9Helper$", "-test.timeout=5m")
	cmd.Env = append(os.Environ(), "EDGE_KILL9_DIR="+dir)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	var url []byte
	testkit.WaitFor(t, 60*time.Second, func() error {
		url, _ = os.ReadFile(filepath.Join(dir, "url"))
		if len(url) <= 0 {
			return errors.New("still waiting for the helper agent to start")
		}
		return nil
	})
	nc, err := nats.Connect(string(url), nats.MaxReconnects(0))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(256))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var acked []uint64
	done, stop := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			f, err := js.PublishAsync(fmt.Sprintf("telemetry.burst.%d", i%8), []byte(fmt.Sprintf("reading %d", i)))
			if errors.Is(err, jetstream.ErrTooManyStalledMsgs) {
				continue // the window is full: wait for acks
			}
			if err != nil {
				return // the connection died with the agent
			}
			go func() {
				select {
				case ack := <-f.Ok():
					mu.Lock()
					acked = append(acked, ack.Sequence)
					mu.Unlock()
				case <-f.Err():
				case <-stop:
				}
			}()
		}
	}()
	testkit.WaitFor(t, 60*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(acked) < 2000 {
			return errors.New("still waiting for 2000 acks")
		}
		return nil
	})
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	close(stop)
	<-done
	nc.Close()
	mu.Lock()
	got := slices.Clone(acked)
	mu.Unlock()

	a := agentOn(t, dir, "")
	s, err := localJS(t, a).Stream(context.Background(), buffer.StreamTelemetry)
	if err != nil {
		t.Fatal(err)
	}
	st := s.CachedInfo().State
	t.Logf("killed after %d acks; after restart the stream holds %d (seq %d..%d)", len(got), st.Msgs, st.FirstSeq, st.LastSeq)
	for _, seq := range got {
		if _, err := s.GetMsg(context.Background(), seq); err != nil {
			t.Fatalf("acknowledged message %d missing after kill -9: %v", seq, err)
		}
	}
}

// The durability contract is set explicitly on the embedded server, never
// inherited (nats-server's default acks before disk and fsyncs every 2 min),
// and max_file_store comes from config, never from free disk at boot.
func TestBufferSyncOptions(t *testing.T) {
	for _, tc := range []struct {
		body     string
		always   bool
		interval time.Duration
		store    int64
	}{
		{"", true, 2 * time.Minute, 2 << 30},
		{"buffer:\n  sync: 1s\n  max_bytes: 100MiB\n", false, time.Second, 200 << 20},
	} {
		a := startAgent(t, tc.body)
		c := a.Server().JetStreamConfig()
		if c.SyncAlways != tc.always || c.SyncInterval != tc.interval || c.MaxStore != tc.store {
			t.Errorf("config %q: server runs with sync_always=%v sync_interval=%s max_store=%d, want %v %s %d", tc.body, c.SyncAlways, c.SyncInterval, c.MaxStore, tc.always, tc.interval, tc.store)
		}
		if h := a.BufferHealth(); h.StoreLimit != tc.store || h.SyncMode != a.Config().Buffer.Sync {
			t.Errorf("health: %+v", h)
		}
		_ = a.stop()
	}
}
