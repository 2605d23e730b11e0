package uplink

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/edge-agent/edge-agent/internal/testkit"
	"github.com/edge-agent/edge-agent/uplink/hubops"
)

// natsServerBinary finds a nats-server executable installed on the host
// (Debian's package puts it in /usr/sbin), or skips the test.
func natsServerBinary(t testing.TB) string {
	t.Helper()
	for _, p := range []string{"nats-server", "/usr/sbin/nats-server", "/usr/bin/nats-server"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	t.Skip("no nats-server binary: interop with a stock hub not tested (apt-get install -y nats-server; CI installs it)")
	return ""
}

// buildNATSServer builds the module's nats-server once per benchmark.
func buildNATSServer(b *testing.B) string {
	bin := filepath.Join(b.TempDir(), "nats-server")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/nats-io/nats-server/v2").CombinedOutput(); err != nil {
		b.Fatalf("build nats-server: %v\n%s", err, out)
	}
	return bin
}

// hubProcess is a nats-server child process used as the hub: JetStream
// domain "hub", leafnodes with no_advertise (a leaf reaches it through a
// proxy), on free loopback ports. Interop tests run a stock nats-server so;
// benchmarks run the module's, so that the hub's CPU time is its own: the
// cost a reading puts on the shared hub is what limits a fleet, and
// in-process the sites' work would be charged to the same clock.
type hubProcess struct {
	version  string
	client   string // nats://127.0.0.1:port
	leafAddr string // 127.0.0.1:port
	pid      int
	prof     string // 127.0.0.1:port of its profiling endpoint; "" if none
}

// startExtHub runs the nats-server installed on the host as the hub, or
// skips the test.
func startExtHub(t testing.TB) *hubProcess {
	t.Helper()
	return startHubProcess(t, natsServerBinary(t), false)
}

// startHubProcess runs the nats-server binary bin as the hub until the
// test ends; a failed test shows the hub's log. prof gives it
// nats-server's profiling endpoint (prof_port) on a free loopback port.
func startHubProcess(t testing.TB, bin string, prof bool) *hubProcess {
	t.Helper()
	out, err := exec.Command(bin, "--version").CombinedOutput()
	if err != nil {
		t.Fatalf("%s --version: %v: %s", bin, err, out)
	}
	dir := t.TempDir()
	cport, lport := testkit.FreePort(t), testkit.FreePort(t)
	conf := fmt.Sprintf(`server_name: hub
listen: 127.0.0.1:%d
jetstream { store_dir: %q, domain: hub }
leafnodes { listen: 127.0.0.1:%d, no_advertise: true }
`, cport, filepath.Join(dir, "js"), lport)
	pport := 0
	if prof {
		pport = testkit.FreePort(t)
		conf += fmt.Sprintf("prof_port: %d\n", pport)
	}
	cf := filepath.Join(dir, "hub.conf")
	if err := os.WriteFile(cf, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	logf := filepath.Join(dir, "hub.log")
	cmd := exec.Command(bin, "-c", cf, "-l", logf)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			b, _ := os.ReadFile(logf)
			t.Logf("hub log (%s):\n%s", cf, b)
		}
	})
	h := &hubProcess{
		pid:      cmd.Process.Pid,
		version:  strings.TrimSpace(string(out)),
		client:   fmt.Sprintf("nats://127.0.0.1:%d", cport),
		leafAddr: fmt.Sprintf("127.0.0.1:%d", lport),
	}
	if prof {
		h.prof = fmt.Sprintf("127.0.0.1:%d", pport)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case err := <-exited:
			b, _ := os.ReadFile(logf)
			t.Fatalf("%s exited at start: %v\n%s", bin, err, b)
		default:
		}
		if c, err := net.DialTimeout("tcp", h.leafAddr, time.Second); err == nil {
			c.Close()
			if nc, err := nats.Connect(h.client); err == nil {
				nc.Close()
				return h
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not accepting connections on %s and %s after 20s", bin, h.client, h.leafAddr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// env is the hub's side of an fwEnv, for fwEnvOpts.sharedHub: a client
// connection and the hub stream EDGE.
func (h *hubProcess) env(t testing.TB) *fwEnv {
	t.Helper()
	e := &fwEnv{t: t, hubLeaf: h.leafAddr} // hub nil: another process
	e.hubNC, e.hubJS = testkit.Connect(t, h.client)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := hubops.EnsureHubStream(ctx, e.hubJS, hubops.HubStreamConfig("EDGE", "edge", 2*time.Hour)); err != nil {
		t.Fatalf("create hub stream on %s: %v", h.version, err)
	}
	return e
}

// cpu is the hub process's user+system time so far.
func (h *hubProcess) cpu() time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", h.pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / 100 // USER_HZ
}

// cpuProfile starts a CPU profile of the hub (started with prof) over the
// next d and returns a function that waits for it and writes it to path.
func (h *hubProcess) cpuProfile(d time.Duration, path string) (wait func() error) {
	done := make(chan error, 1)
	go func() {
		url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", h.prof, int(d.Seconds()))
		resp, err := http.Get(url)
		if err != nil {
			done <- err
			return
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			done <- fmt.Errorf("%s: %s", url, resp.Status)
			return
		}
		f, err := os.Create(path)
		if err != nil {
			done <- err
			return
		}
		_, err = io.Copy(f, resp.Body)
		done <- errors.Join(err, f.Close())
	}()
	return func() error { return <-done }
}
