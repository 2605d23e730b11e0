package main

import (
	"bytes"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/edge-agent/edge-agent/internal/testkit"
	"github.com/edge-agent/edge-agent/uplink/hubops"
)

// hub init allows fast batches on a stream it creates, turns them on for
// an existing stream that lacks them and says so, and leaves a stream that
// has them as it is.
func TestHubInitFastBatch(t *testing.T) {
	url := testHub(t).ClientURL()
	js := hubJS(t, url)
	old := hubops.HubStreamConfig("EDGE", "edge", 2*time.Hour)
	old.AllowBatchPublish = false // as hub init made it before fast batches
	if _, err := js.CreateStream(t.Context(), old); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"verified existing (allowed fast batches) hub stream EDGE:",
		"verified existing (not changed) hub stream EDGE:",
	} {
		var out, errb bytes.Buffer
		if code := run([]string{"hub", "init", "--server", url}, &out, &errb); code != 0 || !strings.Contains(out.String(), want) || !strings.Contains(out.String(), "fast batch publishing allowed (allow_batched)") {
			t.Fatalf("exit %d, output lacks %q:\n%s%s", code, want, out.String(), errb.String())
		}
	}
	s, err := js.Stream(t.Context(), "EDGE")
	if err != nil || !s.CachedInfo().Config.AllowBatchPublish {
		t.Fatalf("hub stream after hub init: %v, allow_batched %v", err, err == nil && s.CachedInfo().Config.AllowBatchPublish)
	}
}

// Against a hub older than nats-server 2.14 (Debian's 2.9) hub init
// creates the stream and says that sites get one ack per reading.
func TestHubInitOldHub(t *testing.T) {
	bin, err := exec.LookPath("/usr/sbin/nats-server")
	if err != nil {
		t.Skip("no Debian nats-server (apt-get install -y nats-server): hub init against an old hub not tested")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cmd := exec.Command(bin, "-a", "127.0.0.1", "-p", fmt.Sprint(port), "-js", "-sd", t.TempDir())
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	var out, errb bytes.Buffer
	testkit.WaitFor(t, 10*time.Second, func() error {
		out.Reset()
		errb.Reset()
		if code := run([]string{"hub", "init", "--server", url, "--timeout", "5s"}, &out, &errb); code != 0 {
			return fmt.Errorf("exit %d:\n%s%s", code, out.String(), errb.String())
		}
		return nil
	})
	if want := "older than 2.14; sites use one hub ack per reading"; !strings.Contains(out.String(), want) {
		t.Fatalf("output lacks %q:\n%s%s", want, out.String(), errb.String())
	}
}
