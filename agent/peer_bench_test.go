package agent

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/edge-agent/edge-agent/buffer"
	"github.com/edge-agent/edge-agent/internal/jsclient"
	"github.com/edge-agent/edge-agent/internal/testkit"
)

// Peer benchmarks: edge-agent against a plain nats-server measured in the
// same run on the same machine. Each iteration is a full measurement (they
// work with -benchtime=1x) and the figures are medians over iterations, so
// one noisy moment on a shared machine does not make the number.

// median of xs (xs is sorted in place).
func median(xs []float64) float64 {
	slices.Sort(xs)
	return xs[len(xs)/2]
}

// pubSubRate sends n core messages from one TCP client to another through
// the server at url and returns messages per second, publish to last
// delivery.
func pubSubRate(b *testing.B, url string, n int) float64 {
	b.Helper()
	sub := connect(b, url)
	pub := connect(b, url)
	defer sub.Close()
	defer pub.Close()
	var mu sync.Mutex
	got := 0
	done := make(chan struct{})
	s, err := sub.Subscribe("bench.peer", func(*nats.Msg) {
		mu.Lock()
		got++
		if got == n {
			close(done)
		}
		mu.Unlock()
	})
	if err != nil {
		b.Fatal(err)
	}
	_ = s.SetPendingLimits(-1, -1)
	if err := sub.Flush(); err != nil {
		b.Fatal(err)
	}
	data := make([]byte, 128)
	start := time.Now()
	for range n {
		if err := pub.Publish("bench.peer", data); err != nil {
			b.Fatal(err)
		}
	}
	if err := pub.Flush(); err != nil {
		b.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		mu.Lock()
		defer mu.Unlock()
		b.Fatalf("%s: %d of %d messages delivered in 2m", url, got, n)
	}
	return float64(n) / time.Since(start).Seconds()
}

// BenchmarkPeerPubSub: core publish/subscribe through the agent's embedded
// leaf server (connected to a hub, as deployed) against a standalone
// in-process nats-server of the same version (go.mod's, no configuration).
// Peers of the same version with the agent's configuration, whole and one
// feature at a time, say what the gap is made of: same_config is the
// options the agent gives its server (JetStream with the site's domain,
// the uplink remote with its deny lists, the local users and their
// permissions) without the agent around it, the bound for any agent that
// keeps that configuration; jetstream, js_domain and local_perms add one
// part to the bare server (JetStream without a domain, with the site's
// domain, the local users).
func BenchmarkPeerPubSub(b *testing.B) {
	hub := testkit.RunServer(b, testkit.HubOpts(b))
	body := fmt.Sprintf("uplink:\n  hub_urls: [%s]\n", leafURL(b, hub, "nats"))
	a := startAgent(b, body)
	bare := func() *server.Options {
		return &server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true}
	}
	sameConfig := func() *server.Options {
		// Another site: two leaves of one JetStream domain would clash
		// at the hub.
		cfg := testConfig(b, "site: peer\n"+body)
		o, _, err := mergedOptions(cfg, slog.New(slog.DiscardHandler))
		if err != nil {
			b.Fatal(err)
		}
		o.ServerName, o.NoLog = ServerNameFor(cfg.Site, "peer"), true
		return o
	}
	js := bare()
	js.JetStream, js.StoreDir = true, b.TempDir()
	jsDomain := bare()
	jsDomain.JetStream, jsDomain.JetStreamDomain, jsDomain.StoreDir = true, "peer", b.TempDir()
	localPerms := bare()
	setLocalPermissions(localPerms, "peer")
	servers := []struct {
		name string
		url  string
	}{
		{"agent", a.ClientURL()},
		{"nats_server", testkit.RunServer(b, bare()).ClientURL()},
		{"same_config_nats_server", testkit.RunServer(b, sameConfig()).ClientURL()},
		{"jetstream_nats_server", testkit.RunServer(b, js).ClientURL()},
		{"js_domain_nats_server", testkit.RunServer(b, jsDomain).ClientURL()},
		{"local_perms_nats_server", testkit.RunServer(b, localPerms).ClientURL()},
	}
	const n = 200_000
	rates := make(map[string][]float64)
	// Three rounds per iteration, each starting one server later: a
	// median even at -benchtime=1x, and no server always runs on the
	// warmer machine.
	for i := 0; i < 3*b.N; i++ {
		for j := range servers {
			s := servers[(i+j)%len(servers)]
			rates[s.name] = append(rates[s.name], pubSubRate(b, s.url, n))
		}
	}
	m := make(map[string]float64)
	for _, s := range servers {
		m[s.name] = median(rates[s.name])
		b.ReportMetric(m[s.name], "msgs/s_"+s.name)
	}
	b.ReportMetric(m["agent"]/m["nats_server"], "ratio_vs_nats_server")
	for _, p := range servers[2:] {
		b.ReportMetric(m[p.name]/m["nats_server"], strings.TrimSuffix(p.name, "_nats_server")+"_ratio_vs_nats_server")
	}
	// What the agent adds to its server's configuration.
	b.ReportMetric(m["agent"]/m["same_config_nats_server"], "ratio_vs_same_config_nats_server")
}

// binary is a main package built once per test binary: RSS and start time
// are properties of the real process.
type binary struct {
	pkg  string
	once sync.Once
	path string
	err  error
}

var (
	agentBinary = &binary{pkg: "github.com/edge-agent/edge-agent/agent/cmd/edge-agent"}
	// sameVersionNATSServer is nats-server's own main package at the
	// version the agent embeds (go.mod): the peer that separates what the
	// server's version costs from what the agent adds.
	sameVersionNATSServer = &binary{pkg: "github.com/nats-io/nats-server/v2"}
)

func (bin *binary) build(b *testing.B) string {
	b.Helper()
	bin.once.Do(func() {
		dir, err := os.MkdirTemp("", "edge-agent-bench-")
		if err != nil {
			bin.err = err
			return
		}
		bin.path = filepath.Join(dir, filepath.Base(bin.pkg))
		// Built as cross/build.sh builds the release: static, stripped.
		// A cgo build maps libc and its NSS modules too, which no shipped
		// binary does.
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin.path, bin.pkg)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		out, err := cmd.CombinedOutput()
		if err != nil {
			bin.err = fmt.Errorf("go build %s: %v\n%s", bin.pkg, err, out)
		}
	})
	if bin.err != nil {
		b.Fatal(bin.err)
	}
	return bin.path
}

// peerNATSServer is Debian's nats-server binary (apt-get install
// nats-server); peers that need it are skipped without it.
func peerNATSServer(b *testing.B) string {
	b.Helper()
	p, err := exec.LookPath("nats-server")
	if err != nil {
		b.Skip("nats-server binary not found (apt-get install nats-server): peer not measured")
	}
	return p
}

// proc is a server process under measurement.
type proc struct {
	cmd  *exec.Cmd
	url  string
	sock string // agent control socket, "" for nats-server
	// notified is closed when the agent sends systemd's READY=1; nil for
	// nats-server, which does not.
	notified chan struct{}
	// logged is closed when the process logs nats-server's "Server is
	// ready" (the agent logs it only at log_level info).
	logged chan struct{}
	// readyAt, when set, is when the process was ready: for a peer that
	// had work to do after nats-server's own start.
	readyAt time.Time
	done    chan error
	once    sync.Once
}

// readyLog is a process's output, watched for nats-server's "Server is
// ready" line: its own signal that it accepts clients, JetStream enabled.
type readyLog struct {
	mu    sync.Mutex
	tail  []byte
	ready chan struct{}
}

func (w *readyLog) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.tail == nil {
		return len(p), nil // seen
	}
	w.tail = append(w.tail, p...)
	if bytes.Contains(w.tail, []byte("Server is ready")) {
		w.tail = nil
		close(w.ready)
	} else if n := len(w.tail); n > 64 {
		w.tail = w.tail[n-64:] // enough for the line across two writes
	}
	return len(p), nil
}

// startAgentProc runs `edge-agent run` standalone with one sim sensor on dir
// (reused across starts: the store is kept).
func startAgentProc(b *testing.B, dir string, maxBytes string) *proc {
	b.Helper()
	port := testkit.FreePort(b)
	cfg := filepath.Join(dir, "agent.yaml")
	sock := filepath.Join(dir, "agent.sock")
	y := fmt.Sprintf("site: bench\nstate_dir: %s\nlisten: 127.0.0.1:%d\ncontrol_socket: %s\nmetrics_listen: \"\"\nlog_level: warn\nbuffer: {max_bytes: %s}\nsensors:\n  - {name: s, driver: sim, interval: 1s}\n",
		filepath.Join(dir, "state"), port, sock, maxBytes)
	if err := os.WriteFile(cfg, []byte(y), 0o644); err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(agentBinary.build(b), "run", "--config", cfg)
	notify := openNotify(b, filepath.Join(dir, "notify.sock"))
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+notify.path)
	p := startProc(b, cmd, port, sock)
	p.notified = notify.ready
	return p
}

// startNATSProc runs Debian's `nats-server -js` with its store in dir.
func startNATSProc(b *testing.B, dir string) *proc {
	b.Helper()
	return startNATSBinary(b, peerNATSServer(b), dir)
}

// startNATSBinary runs bin as `nats-server -js` with its store in dir,
// env added to this process's environment.
func startNATSBinary(b *testing.B, bin, dir string, env ...string) *proc {
	b.Helper()
	port := testkit.FreePort(b)
	cmd := exec.Command(bin, "-js", "-a", "127.0.0.1", "-p", strconv.Itoa(port), "-sd", filepath.Join(dir, "nats"))
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	return startProc(b, cmd, port, "")
}

// startSameVersion is startNATSBinary for a peer of the embedded version
// that bounds the agent's memory: it runs under the agent's runtime
// defaults (RuntimeDefaults), since a bound collected less eagerly than
// the agent is no bound.
func startSameVersion(b *testing.B, bin, dir string) *proc {
	b.Helper()
	env := []string{fmt.Sprintf("GOGC=%d", defaultGOGC)}
	if total := machineMemory(); total > 0 {
		env = append(env, fmt.Sprintf("GOMEMLIMIT=%d", total/memoryShare))
	}
	return startNATSBinary(b, bin, dir, env...)
}

// startCreatingStreams runs nats-server at the embedded version on an
// empty store with the agent's default buffer.sync (sync_interval always:
// each stream's files are synced as it is created) and creates the
// agent's buffer streams side by side, as the agent's start does: the
// least any process does before it can buffer readings as durably. Its
// proc is ready once they exist.
func startCreatingStreams(b *testing.B, bin, dir string) *proc {
	b.Helper()
	conf := filepath.Join(dir, "sync.conf")
	if err := os.WriteFile(conf, []byte("jetstream: {sync_interval: always}\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	port := testkit.FreePort(b)
	p := startProc(b, exec.Command(bin, "-c", conf, "-js", "-a", "127.0.0.1", "-p", strconv.Itoa(port), "-sd", filepath.Join(dir, "nats")), port, "")
	p.waitSignal(b)
	nc := connect(b, p.url)
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(buffer.Lanes))
	for _, c := range buffer.StreamConfigs(buffer.DefaultConfig()) {
		wg.Go(func() {
			_, err := js.CreateStream(context.Background(), c)
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			b.Fatal(err)
		}
	}
	p.readyAt = time.Now()
	return p
}

// startSameWork runs nats-server at the embedded version doing the
// JetStream work of the idle agent in startAgentProc: its buffer streams,
// and one reading a second into TELEMETRY as the sim sensor writes. What
// the agent uses more than this is its own.
func startSameWork(b *testing.B, bin, dir string) *proc {
	b.Helper()
	p := startSameVersion(b, bin, dir)
	p.waitReady(b)
	nc := connect(b, p.url)
	js, err := jetstream.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if err := buffer.EnsureStreams(ctx, js, buffer.DefaultConfig()); err != nil {
		b.Fatal(err)
	}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		reading := make([]byte, 200)
		for {
			// An error ends the writer: the server is being stopped.
			if _, err := js.Publish(ctx, "telemetry.bench.s", reading); err != nil {
				return
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	b.Cleanup(func() {
		close(stop)
		nc.Close()
		<-done
	})
	return p
}

func startProc(b *testing.B, cmd *exec.Cmd, port int, sock string) *proc {
	b.Helper()
	out := &readyLog{tail: []byte{}, ready: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	p := &proc{cmd: cmd, url: fmt.Sprintf("nats://127.0.0.1:%d", port), sock: sock, logged: out.ready, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait() }()
	b.Cleanup(func() { p.stop(b) })
	return p
}

// waitReady returns when the process was ready, each by its own signal:
// nats-server when it logs "Server is ready" (clients accepted, JetStream
// enabled), the agent when it sends systemd's READY=1, a peer with work
// of its own when that is done. Neither is polled: a poll loads the start
// it measures. Untimed, it then checks what ready promises: JetStream
// answers, and the agent stores a reading.
func (p *proc) waitReady(b *testing.B) time.Time {
	b.Helper()
	if !p.readyAt.IsZero() {
		return p.readyAt
	}
	at := p.waitSignal(b)
	if err := p.ready(p.notified != nil); err != nil {
		b.Fatalf("%s, ready at %s: %v", p.cmd.Path, at.Format(time.StampMicro), err)
	}
	return at
}

// waitSignal waits for the process's own ready signal and returns when it
// came.
func (p *proc) waitSignal(b *testing.B) time.Time {
	b.Helper()
	signal, what := p.logged, `"Server is ready"`
	if p.notified != nil {
		signal, what = p.notified, "READY=1"
	}
	select {
	case <-signal:
	case err := <-p.done:
		b.Fatalf("%s exited before %s: %v", p.cmd.Path, what, err)
	case <-time.After(5 * time.Minute):
		b.Fatalf("%s: no %s in 5m", p.cmd.Path, what)
	}
	return time.Now()
}

// ready checks that JetStream answers and, with store, that a reading
// published to the agent's telemetry subjects is stored.
func (p *proc) ready(store bool) error {
	return jsclient.Do(p.url, func(js jetstream.JetStream) error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if _, err := js.AccountInfo(ctx); err != nil || !store {
			return err
		}
		_, err := js.Publish(ctx, "telemetry.bench.ready", []byte("{}"))
		return err
	}, nats.Timeout(time.Second), nats.MaxReconnects(0))
}

// waitHealth polls every millisecond until the agent's control API
// answers GET /v1/health (what `edge-agent status` needs) and returns
// when it did.
func (p *proc) waitHealth(b *testing.B) time.Time {
	b.Helper()
	return p.poll(b, "answering /v1/health", p.health)
}

func (p *proc) poll(b *testing.B, what string, ok func() bool) time.Time {
	b.Helper()
	deadline := time.Now().Add(5 * time.Minute)
	for !ok() {
		select {
		case err := <-p.done:
			b.Fatalf("%s exited before %s: %v", p.cmd.Path, what, err)
		default:
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s not %s in 5m", p.cmd.Path, what)
		}
		time.Sleep(time.Millisecond)
	}
	return time.Now()
}

func (p *proc) health() bool {
	hc := http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", p.sock)
		},
	}}
	resp, err := hc.Get("http://edge-agent/v1/health")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return true
}

// stop is SIGTERM and wait; idempotent.
func (p *proc) stop(b *testing.B) {
	p.once.Do(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(time.Minute):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
}

// rssMiB is the process's resident set (VmRSS) from /proc.
func (p *proc) rssMiB(b *testing.B) float64 { return p.statusMiB(b, "VmRSS") }

// statusMiB is a kB field of the process's /proc status in MiB: RssAnon
// is the resident set without the mapped binary's pages (RssFile), which
// are clean, shared with the page cache and reclaimable.
func (p *proc) statusMiB(b *testing.B, field string) float64 {
	b.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			if err != nil {
				b.Fatal(err)
			}
			return kb / 1024
		}
	}
	b.Fatalf("no %s in /proc status", field)
	return 0
}

// fillStore publishes size bytes to telemetry.fill (creating the stream on a
// bare nats-server) with a window of async publishes.
func fillStore(b *testing.B, url string, size int64, msgSize int) {
	b.Helper()
	nc := connect(b, url)
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(256))
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if _, err := js.Stream(ctx, "TELEMETRY"); err != nil {
		if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "TELEMETRY", Subjects: []string{"telemetry.>"}, Storage: jetstream.FileStorage}); err != nil {
			b.Fatal(err)
		}
	}
	data := make([]byte, msgSize)
	// Batches of async publishes, each waited for: a full window stalls
	// the client instead of queueing without bound.
	for sent := int64(0); sent < size; {
		for i := 0; i < 128 && sent < size; i++ {
			if _, err := js.PublishAsync("telemetry.fill", data); err != nil {
				b.Fatal(err)
			}
			sent += int64(msgSize)
		}
		select {
		case <-js.PublishAsyncComplete():
		case <-time.After(5 * time.Minute):
			b.Fatal("fill: a batch of publishes was not acknowledged in 5m")
		}
	}
}

// BenchmarkPeerRSS: resident memory of the edge-agent process, idle and
// after storing 20k 1 KiB readings, against `nats-server -js` doing the
// same (Debian's binary: its version is older than the embedded one). The
// same figures for nats-server built at the embedded version, idle and
// doing the agent's JetStream work, separate what the server's version
// and JetStream cost from what the agent adds.
func BenchmarkPeerRSS(b *testing.B) {
	peerNATSServer(b)
	type rss struct{ idle, idleAnon, loaded []float64 }
	measure := func(r *rss, start func(dir string) *proc) {
		p := start(b.TempDir())
		p.waitReady(b)
		// Let start-up garbage be collected and the sampler tick: RSS of
		// a daemon that has run a moment, not of one mid-initialisation.
		time.Sleep(2 * time.Second)
		r.idle = append(r.idle, p.rssMiB(b))
		r.idleAnon = append(r.idleAnon, p.statusMiB(b, "RssAnon"))
		fillStore(b, p.url, 20_000*1024, 1024)
		r.loaded = append(r.loaded, p.rssMiB(b))
		p.stop(b)
	}
	sameVersion := sameVersionNATSServer.build(b)
	var agent, peer, same, work rss
	for i := 0; i < b.N; i++ {
		measure(&agent, func(dir string) *proc { return startAgentProc(b, dir, "1GiB") })
		measure(&peer, func(dir string) *proc { return startNATSProc(b, dir) })
		measure(&same, func(dir string) *proc { return startSameVersion(b, sameVersion, dir) })
		measure(&work, func(dir string) *proc { return startSameWork(b, sameVersion, dir) })
	}
	ai, al, ni, nl, wi, wl := median(agent.idle), median(agent.loaded), median(peer.idle), median(peer.loaded), median(work.idle), median(work.loaded)
	b.ReportMetric(ai, "MiB_idle_agent")
	b.ReportMetric(ni, "MiB_idle_nats_server")
	b.ReportMetric(ai/ni, "idle_rss_ratio_vs_nats_server")
	b.ReportMetric(al, "MiB_loaded_agent")
	b.ReportMetric(nl, "MiB_loaded_nats_server")
	b.ReportMetric(al/nl, "loaded_rss_ratio_vs_nats_server")
	b.ReportMetric(median(agent.idleAnon), "MiB_idle_anon_agent")
	b.ReportMetric(median(peer.idleAnon), "MiB_idle_anon_nats_server")
	b.ReportMetric(median(same.idle), "MiB_idle_same_version_nats_server")
	b.ReportMetric(median(same.loaded), "MiB_loaded_same_version_nats_server")
	b.ReportMetric(wi, "MiB_idle_same_work_nats_server")
	b.ReportMetric(wl, "MiB_loaded_same_work_nats_server")
	// The bound: the embedded server doing the agent's JetStream work,
	// against the goal's peer.
	b.ReportMetric(wi/ni, "same_work_idle_rss_ratio_vs_nats_server")
	b.ReportMetric(wl/nl, "same_work_loaded_rss_ratio_vs_nats_server")
	// What the agent adds to that.
	b.ReportMetric(ai/wi, "idle_rss_ratio_vs_same_work_nats_server")
	b.ReportMetric(al/wl, "loaded_rss_ratio_vs_same_work_nats_server")
}

// prefillBytes is the store size for the pre-filled start: 1 GiB for the
// report, 100 MiB under -short, or EDGE_BENCH_PREFILL_MB.
func prefillBytes() int64 {
	if mb, err := strconv.Atoi(os.Getenv("EDGE_BENCH_PREFILL_MB")); err == nil && mb > 0 {
		return int64(mb) << 20
	}
	if testing.Short() {
		return 100 << 20
	}
	return 1 << 30
}

// BenchmarkPeerReady: process start to ready (accepts a client, JetStream
// answers; the agent also answers /v1/health) with an empty store and a
// pre-filled one, against `nats-server -js` on a store of the same size.
// With an empty store it also measures the bound: nats-server at the
// embedded version that creates the agent's buffer streams before it is
// ready (startCreatingStreams). With a pre-filled store the bound is
// nats-server at the embedded version started on a copy of the agent's
// store (the same streams and blocks), plus the agent's salvage pass
// alone on that store, which reads every block the hub does not have
// before the server may open it.
func BenchmarkPeerReady(b *testing.B) {
	peerNATSServer(b)
	for _, tc := range []struct {
		name string
		fill int64
	}{{"empty", 0}, {"prefilled", prefillBytes()}} {
		b.Run(tc.name, func(b *testing.B) {
			agentDir, natsDir, sameDir := b.TempDir(), b.TempDir(), b.TempDir()
			maxBytes := fmt.Sprintf("%dMiB", max(2*tc.fill>>20, 64))
			if tc.fill > 0 {
				// Fill once through each server itself, then stop it: the
				// measured start recovers that store.
				p := startAgentProc(b, agentDir, maxBytes)
				p.waitReady(b)
				fillStore(b, p.url, tc.fill, 64<<10)
				p.stop(b)
				p = startNATSProc(b, natsDir)
				p.waitReady(b)
				fillStore(b, p.url, tc.fill, 64<<10)
				p.stop(b)
				// nats-server appends "jetstream" to the store directory
				// it is given, as the agent's store_dir does.
				copyTree(b, filepath.Join(agentDir, "state", "jetstream"), filepath.Join(sameDir, "nats", "jetstream"))
			}
			ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
			timeReady := func(start func() *proc) float64 {
				t0 := time.Now()
				p := start()
				d := ms(p.waitReady(b).Sub(t0))
				p.stop(b)
				return d
			}
			var ht []float64
			// The agent's READY, then its control API's first answer.
			timeAgent := func() float64 {
				t0 := time.Now()
				p := startAgentProc(b, agentDir, maxBytes)
				d := ms(p.waitReady(b).Sub(t0))
				ht = append(ht, ms(p.waitHealth(b).Sub(t0)))
				p.stop(b)
				return d
			}
			sameVersion := sameVersionNATSServer.build(b)
			var at, nt, st, salvage []float64
			// Three starts of each per iteration, for a median at -benchtime=1x.
			for i := 0; i < 3*b.N; i++ {
				if tc.fill == 0 {
					agentDir, natsDir = b.TempDir(), b.TempDir()
				}
				at = append(at, timeAgent())
				nt = append(nt, timeReady(func() *proc { return startNATSProc(b, natsDir) }))
				if tc.fill == 0 {
					st = append(st, timeReady(func() *proc { return startCreatingStreams(b, sameVersion, b.TempDir()) }))
					continue
				}
				st = append(st, timeReady(func() *proc { return startNATSBinary(b, sameVersion, sameDir) }))
				// The pass as the agent's start runs it, on the store it
				// just stopped on: intact, so it only reads.
				t0 := time.Now()
				if _, err := buffer.SalvageStore(filepath.Join(agentDir, "state"), slog.New(slog.DiscardHandler)); err != nil {
					b.Fatal(err)
				}
				salvage = append(salvage, float64(time.Since(t0).Microseconds())/1000)
			}
			b.ReportMetric(median(at), "ms_ready_agent")
			b.ReportMetric(median(nt), "ms_ready_nats_server")
			b.ReportMetric(median(at)/median(nt), "ratio_vs_nats_server")
			b.ReportMetric(median(ht), "ms_health_agent")
			b.ReportMetric(float64(tc.fill>>20), "MiB_store")
			if tc.fill == 0 {
				// The bound: a server that has the agent's streams to
				// create on an empty store before it can take readings.
				b.ReportMetric(median(st), "ms_ready_same_work_nats_server")
				b.ReportMetric(median(st)/median(nt), "same_work_ratio_vs_nats_server")
				b.ReportMetric(median(at)/median(st), "ratio_vs_same_work_nats_server")
				return
			}
			sm, sv := median(st), median(salvage)
			b.ReportMetric(sm, "ms_ready_same_version_nats_server")
			b.ReportMetric(sm/median(nt), "same_version_ratio_vs_nats_server")
			b.ReportMetric(sv, "ms_salvage_agent")
			// The bound: the pass, then the embedded server's own start.
			b.ReportMetric((sv+sm)/median(nt), "salvage_same_version_ratio_vs_nats_server")
			// What the agent adds to those two.
			b.ReportMetric(median(at)/(sv+sm), "ratio_vs_salvage_same_version")
		})
	}
}
