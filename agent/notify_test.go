package agent

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edge-agent/edge-agent/internal/testkit"
)

// sdSocket is a fake systemd notify socket collecting every datagram;
// ready is closed at the first READY=1.
type sdSocket struct {
	path  string
	ready chan struct{}
	mu    sync.Mutex
	msgs  []string
}

// listenNotify is a notify socket this test's agents send to.
func listenNotify(t *testing.T) *sdSocket {
	t.Helper()
	s := openNotify(t, filepath.Join(t.TempDir(), "notify.sock"))
	t.Setenv("NOTIFY_SOCKET", s.path)
	return s
}

// openNotify listens on a notify socket at path until the test ends.
func openNotify(t testing.TB, path string) *sdSocket {
	t.Helper()
	_ = os.Remove(path) // a directory reused across starts keeps the last one
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	s := &sdSocket{path: path, ready: make(chan struct{})}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 4096)
		ready := false
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			s.mu.Lock()
			s.msgs = append(s.msgs, string(buf[:n]))
			s.mu.Unlock()
			if !ready && slices.Contains(strings.Split(string(buf[:n]), "\n"), "READY=1") {
				ready = true
				close(s.ready)
			}
		}
	}()
	t.Cleanup(func() { c.Close(); <-done })
	return s
}

func (s *sdSocket) all() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.msgs...)
}

func (s *sdSocket) count(prefix string) int {
	n := 0
	for _, m := range s.all() {
		if strings.HasPrefix(m, prefix) {
			n++
		}
	}
	return n
}

func TestSystemdNotify(t *testing.T) {
	sd := listenNotify(t)
	t.Setenv("WATCHDOG_USEC", "200000") // ping every 100ms
	a := startAgent(t, twoSims)

	testkit.WaitFor(t, 10*time.Second, func() error {
		if sd.count("READY=1") != 1 {
			return errors.New("still waiting for READY=1")
		}
		return nil
	})
	testkit.WaitFor(t, 10*time.Second, func() error {
		for _, m := range sd.all() {
			if strings.HasPrefix(m, "STATUS=standalone, backlog ") && strings.Contains(m, "2/2 sensors ok") {
				return nil
			}
		}
		return errors.New("still waiting for STATUS= with both sensors ok")
	})
	testkit.WaitFor(t, 10*time.Second, func() error {
		if sd.count("WATCHDOG=1") < 5 {
			return errors.New("still waiting for watchdog pings")
		}
		return nil
	})
	if first := sd.all()[0]; first != "READY=1" {
		t.Errorf("first message %q: READY must come first, after the server, JetStream and state are up", first)
	}

	t.Run("a wedged loop stops the pings", func(t *testing.T) {
		beat := a.Progress("test-loop", 100*time.Millisecond)
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				case <-time.After(20 * time.Millisecond):
					beat()
				}
			}
		})
		// Beating: pings continue.
		n := sd.count("WATCHDOG=1")
		testkit.WaitFor(t, 10*time.Second, func() error {
			if sd.count("WATCHDOG=1") < n+5 {
				return errors.New("still waiting for pings while the loop beats")
			}
			return nil
		})
		close(stop)
		wg.Wait()

		ctl := a.control().notify
		testkit.WaitFor(t, 15*time.Second, func() error {
			if ctl.withheld.Load() < 5 {
				return errors.New("still waiting for pings withheld")
			}
			return nil
		})
		msgs := sd.all()
		stalledAt := -1
		for i, m := range msgs {
			if strings.HasPrefix(m, "STATUS=watchdog withheld: stalled test-loop") {
				stalledAt = i
				break
			}
		}
		if stalledAt < 0 {
			t.Fatalf("no STATUS naming the stalled loop: %q", msgs)
		}
		for _, m := range msgs[stalledAt:] {
			if m == "WATCHDOG=1" {
				t.Fatalf("WATCHDOG=1 sent after the loop stalled: %q", msgs[stalledAt:])
			}
		}
		if !strings.Contains(a.logs.String(), "loop stalled; withholding the systemd watchdog ping") {
			t.Error("stall not logged")
		}

		beat()
		n = sd.count("WATCHDOG=1")
		testkit.WaitFor(t, 10*time.Second, func() error {
			if sd.count("WATCHDOG=1") <= n {
				return errors.New("still waiting for pings resume after the loop moves")
			}
			return nil
		})
	})

	if err := a.stop(); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 5*time.Second, func() error {
		if sd.count("STOPPING=1") != 1 {
			return errors.New("still waiting for STOPPING=1")
		}
		return nil
	})
}

func TestWatchdogSensorDue(t *testing.T) {
	var p progress
	t0 := time.Now()
	loop := func(counter uint64, due time.Time) []loopProgress {
		return []loopProgress{{name: "sensor door", counter: counter, expect: true, due: due}}
	}
	// A sensor backing off far ahead is not late, however long it waits.
	if s := p.stalled(t0, loop(1, t0.Add(time.Hour))); s != nil {
		t.Fatalf("backing-off sensor reported stalled: %v", s)
	}
	if s := p.stalled(t0.Add(59*time.Minute), loop(1, t0.Add(time.Hour))); s != nil {
		t.Fatalf("sensor before its next read reported stalled: %v", s)
	}
	// Past its next read (plus timeout) with nothing moving: wedged.
	if s := p.stalled(t0.Add(time.Hour+3*time.Second), loop(1, t0.Add(time.Hour))); len(s) != 1 || !strings.HasPrefix(s[0], "sensor door") {
		t.Fatalf("wedged sensor not reported: %v", s)
	}
	// It read and scheduled the next: fine again.
	if s := p.stalled(t0.Add(time.Hour+4*time.Second), loop(2, t0.Add(time.Hour+5*time.Second))); s != nil {
		t.Fatalf("recovered sensor reported stalled: %v", s)
	}
	// An idle forwarder (not expected to move) is never stalled.
	idle := []loopProgress{{name: "forwarder", counter: 7, expect: false, within: time.Second}}
	p.stalled(t0, idle)
	if s := p.stalled(t0.Add(time.Hour), idle); s != nil {
		t.Fatalf("idle forwarder reported stalled: %v", s)
	}
}
