package agent

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/edge-agent/edge-agent/internal/testkit"
)

// TestFailedStartLeavesNothingBehind: a run that fails after the server's
// options are built (here nats-server refuses a nats_config remote's
// account) leaves no uplink goroutine and no open file behind, so a
// daemon that retries its start in process, or a test, does not pile up
// loopback listeners.
func TestFailedStartLeavesNothingBehind(t *testing.T) {
	dir := t.TempDir()
	conf := writeFile(t, dir, "leaf.conf", "leafnodes {\n  remotes = [ { url: \"nats://hub-cluster:7422\", account: \"edge-account\" } ]\n}\n", 0o600)
	cfg := configIn(t, dir, fmt.Sprintf("nats_config: %s\nuplink:\n  hub_urls: [nats://127.0.0.1:7422]\n", conf))
	fds := openFiles(t)
	if err := tryRun(t, cfg); err == nil || !strings.Contains(err.Error(), "edge-account") {
		t.Fatalf("run: %v; want nats-server's refusal of the remote account", err)
	}
	testkit.WaitFor(t, 10*time.Second, func() error {
		if strings.Contains(goroutines(), "/uplink.") {
			return errors.New("still waiting for no uplink goroutine left")
		}
		return nil
	})
	testkit.WaitFor(t, 10*time.Second, func() error {
		if openFiles(t) > fds {
			return errors.New("still waiting for no file left open")
		}
		return nil
	})
}

// goroutines is every goroutine's stack.
func goroutines() string {
	buf := make([]byte, 1<<20)
	return string(buf[:runtime.Stack(buf, true)])
}

// openFiles counts the process's open file descriptors: sockets included.
func openFiles(t *testing.T) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	return len(fds)
}
