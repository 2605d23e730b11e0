// Command fleetsim measures a reconnect herd: N agents (one embedded leaf
// server with JetStream each, in this process, through the agent package's
// public API) with a backlog, against one hub in a child process so its CPU
// time is its own. The hub is restarted on the same ports; the run reports
// how long until every agent is back, the spread of reconnect times, how
// long until every backlog reached the hub, and the hub's CPU, once with
// the agent's reconnect policy and once with stock leaf settings (fixed
// interval, via nats_config). `make fleet-sim`; FLEET_N sets N. With
// -fault wan the hub stays up and the whole fleet's WAN fails and returns
// at once instead (one wanfault proxy in front of the hub, unplugged: a
// regional ISP outage), the herd the link's restore watch can cause.
// -fault config stages remote config rollouts over the fleet instead
// (rollout.go).
package main

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/edge-agent/edge-agent/agent"
	"github.com/edge-agent/edge-agent/internal/wanfault"
	"github.com/edge-agent/edge-agent/uplink/hubops"
)

func main() {
	// toxiproxy (wanfault) logs through zerolog's global logger; a program
	// sets its own global log level, the wanfault library does not.
	zerolog.SetGlobalLevel(zerolog.Disabled)
	if len(os.Args) > 1 && os.Args[1] == "hub" {
		if err := runHub(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "fleetsim hub:", err)
			os.Exit(1)
		}
		return
	}
	n := flag.Int("n", envInt("FLEET_N", 100), "agents")
	backlog := flag.Int("backlog", 200, "messages each agent buffers while the hub is down")
	min := flag.Duration("min", time.Second, "uplink.reconnect.min")
	max := flag.Duration("max", 30*time.Second, "uplink.reconnect.max")
	modes := flag.String("modes", "agent,stock", "which runs: agent (uplink reconnect policy), stock (nats_config remote, fixed interval)")
	outage := flag.Duration("outage", 0, "keep the hub (or the WAN) down at least this long (a real outage outlasts the backoff ramp); 0: only while backlogs fill")
	fault := flag.String("fault", "hub", "what fails: hub (the hub process restarts) or wan (every site's WAN is unplugged, the hub stays up); config runs a staged remote config rollout instead")
	deadline := flag.Duration("timeout", 90*time.Second, "give up a phase after this long")
	trace := flag.Int("trace", envInt("FLEET_TRACE", 0), "print the link timeline (attempts, waits, dial errors) of the K slowest agents")
	flag.Parse()
	if *fault == "config" {
		if err := simulateRollout(*n, *deadline); err != nil {
			fmt.Fprintln(os.Stderr, "fleetsim config:", err)
			os.Exit(1)
		}
		return
	}
	for _, mode := range strings.Split(*modes, ",") {
		r, err := simulate(mode, *fault, *n, *backlog, *min, *max, *outage, *deadline, *trace > 0)
		if err != nil {
			fmt.Fprintf(os.Stderr, "fleetsim %s: %v\n", mode, err)
			os.Exit(1)
		}
		r.print(os.Stdout)
		r.printTimelines(os.Stdout, *trace)
	}
}

type result struct {
	mode, fault        string
	n, backlog         int
	reconnect          []time.Duration // per agent, from hub ready to leaf up
	drain              time.Duration   // hub ready to every backlog stored; 0: not measured
	drained            uint64
	cpuConnect, cpuAll time.Duration // hub CPU: until all connected, until drained/end
	outage             time.Duration // hub (WAN) down to hub ready (WAN back) again
	// traces are per agent, with ready the hub's restart; nil unless -trace.
	traces []*tracer
	ready  time.Time
}

func (r result) print(w io.Writer) {
	d := slices.Clone(r.reconnect)
	slices.Sort(d)
	q := func(p float64) time.Duration { return d[min(len(d)-1, int(p*float64(len(d))))].Round(time.Millisecond) }
	fmt.Fprintf(w, "mode=%s agents=%d backlog/agent=%d %s down for %s\n", r.mode, r.n, r.backlog, r.fault, r.outage.Round(100*time.Millisecond))
	fmt.Fprintf(w, "  all reconnected after the %s was back: %s (first %s, p50 %s, p90 %s)\n", r.fault, q(1), d[0].Round(time.Millisecond), q(0.5), q(0.9))
	fmt.Fprintf(w, "  reconnects per 100ms bucket (max): %d\n", maxPerBucket(d, 100*time.Millisecond))
	if r.drain > 0 {
		fmt.Fprintf(w, "  all backlogs at the hub after the %s was back: %s (%d messages)\n", r.fault, r.drain.Round(time.Millisecond), r.drained)
	} else {
		fmt.Fprintf(w, "  backlog drain: not measured (%d of %d messages reached the hub; no forwarder in this mode)\n", r.drained, r.n*r.backlog)
	}
	fmt.Fprintf(w, "  hub CPU: %s until all connected, %s until the end of the run\n", r.cpuConnect.Round(time.Millisecond), r.cpuAll.Round(time.Millisecond))
}

// printTimelines shows why the slowest agents were slow: every attempt,
// wait and dial result around the outage, in seconds from the hub being
// ready again (negative: during the outage).
func (r result) printTimelines(w io.Writer, k int) {
	if r.traces == nil || k <= 0 {
		return
	}
	// A failed attempt ends in the link choosing its next wait.
	hist := map[int]int{}
	for _, t := range r.traces {
		k := 0
		for _, e := range t.events() {
			if e.at.After(r.ready) && strings.HasPrefix(e.line, "uplink: next attempt") {
				k++
			}
		}
		hist[k]++
	}
	fmt.Fprintf(w, "  failed attempts after hub ready (count: agents):")
	for _, k := range slices.Sorted(maps.Keys(hist)) {
		fmt.Fprintf(w, " %d: %d", k, hist[k])
	}
	fmt.Fprintln(w)
	idx := make([]int, len(r.reconnect))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int { return cmp.Compare(r.reconnect[b], r.reconnect[a]) })
	for _, i := range idx[:min(k, len(idx))] {
		fmt.Fprintf(w, "  timeline sim-%04d (back after %s):\n", i, r.reconnect[i].Round(time.Millisecond))
		for _, e := range r.traces[i].events() {
			fmt.Fprintf(w, "    %+8.3fs %s\n", e.at.Sub(r.ready).Seconds(), e.line)
		}
	}
}

func maxPerBucket(d []time.Duration, b time.Duration) int {
	counts := map[time.Duration]int{}
	best := 0
	for _, x := range d {
		k := x / b
		counts[k]++
		best = max(best, counts[k])
	}
	return best
}

func simulate(mode, fault string, n, backlog int, rmin, rmax, outage, deadline time.Duration, trace bool) (res result, err error) {
	res = result{mode: mode, fault: fault, n: n, backlog: backlog}
	if fault != "hub" && fault != "wan" {
		return res, fmt.Errorf("-fault %q: want hub or wan", fault)
	}
	dir, err := os.MkdirTemp("", "fleetsim-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)
	clientPort, leafPort := freePort(), freePort()
	hubURL := fmt.Sprintf("nats://127.0.0.1:%d", clientPort)
	leafURL := fmt.Sprintf("nats://127.0.0.1:%d", leafPort)
	hub, err := startHub(dir, clientPort, leafPort)
	if err != nil {
		return res, err
	}
	defer func() { hub.stop() }()
	// The WAN: every site dials the hub through one proxy, as sites behind
	// one ISP reach the hub through its network.
	var wan *wanfault.Proxy
	if fault == "wan" {
		if wan, err = wanfault.Start(fmt.Sprintf("127.0.0.1:%d", leafPort)); err != nil {
			return res, err
		}
		defer wan.Close()
		leafURL = wan.URL("nats")
	}

	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	agents := make([]*agent.Agent, n)
	for i := range n {
		cfg, err := agentConfig(mode, dir, i, leafURL, rmin, rmax)
		if err != nil {
			return res, err
		}
		alog := log
		if trace {
			t := &tracer{}
			res.traces = append(res.traces, t)
			alog = slog.New(t)
		}
		if agents[i], err = startAgent(ctx, &wg, cfg, alog, deadline); err != nil {
			return res, err
		}
	}
	if err := waitUntil(deadline, func() bool { return countConnected(agents) == n }); err != nil {
		return res, fmt.Errorf("initial connect: %d of %d: %w", countConnected(agents), n, err)
	}

	// Hub outage: stop it, buffer a backlog on every site, start it again
	// on the same ports. WAN outage: unplug the proxy instead, and count
	// the hub's CPU from the moment the WAN is back.
	if fault == "hub" {
		hub.stop()
	} else if err := wan.Unplug(); err != nil {
		return res, err
	}
	down := time.Now()
	if err := waitUntil(deadline, func() bool { return countConnected(agents) == 0 }); err != nil {
		return res, fmt.Errorf("agents still connected after the %s went down: %w", fault, err)
	}
	if err := fillBacklogs(agents, backlog); err != nil {
		return res, err
	}
	time.Sleep(time.Until(down.Add(outage)))
	var cpu0 time.Duration
	if fault == "hub" {
		if hub, err = startHub(dir, clientPort, leafPort); err != nil {
			return res, err
		}
	} else {
		cpu0 = hub.cpu()
		if err := wan.Restore(); err != nil {
			return res, err
		}
	}
	ready := time.Now()
	res.ready, res.outage = ready, ready.Sub(down)
	res.reconnect = make([]time.Duration, n)
	for {
		all := true
		for i, a := range agents {
			if res.reconnect[i] == 0 {
				if a.Server().NumLeafNodes() > 0 {
					res.reconnect[i] = time.Since(ready)
				} else {
					all = false
				}
			}
		}
		if all {
			break
		}
		if time.Since(ready) > deadline {
			return res, fmt.Errorf("only %d of %d reconnected within %s", countConnected(agents), n, deadline)
		}
		time.Sleep(10 * time.Millisecond)
	}
	res.cpuConnect = hub.cpu() - cpu0

	want := uint64(n * backlog)
	nc, err := nats.Connect(hubURL)
	if err != nil {
		return res, err
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	stored := func() uint64 {
		s, err := js.Stream(context.Background(), "EDGE")
		if err != nil {
			return 0
		}
		info, err := s.Info(context.Background())
		if err != nil {
			return 0
		}
		return info.State.Msgs
	}
	// Drain is measured only where a forwarder runs (the uplink block, once
	// the agent wires it): waiting for messages nobody sends measures nothing.
	if mode == "agent" && agents[0].ForwarderStatus() != nil {
		if err := waitUntil(deadline, func() bool { return stored() >= want }); err == nil {
			res.drain = time.Since(ready)
		}
	}
	res.drained = stored()
	res.cpuAll = hub.cpu() - cpu0
	return res, nil
}

func agentConfig(mode, dir string, i int, leafURL string, rmin, rmax time.Duration) (*agent.Config, error) {
	site := fmt.Sprintf("sim-%04d", i)
	sd := filepath.Join(dir, site)
	if err := os.MkdirAll(sd, 0o750); err != nil {
		return nil, err
	}
	// buffer.sync 1s: 100 agents fsyncing every publish on one disk would
	// measure the disk, not the herd.
	y := fmt.Sprintf("site: %s\nstate_dir: %s\nlisten: 127.0.0.1:0\ncontrol_socket: %s\nmetrics_listen: \"\"\nbuffer: {sync: 1s, max_bytes: 16MiB}\n",
		site, sd, filepath.Join(sd, "agent.sock"))
	switch mode {
	case "agent":
		y += fmt.Sprintf("uplink:\n  hub_urls: [%s]\n  reconnect: {min: %s, max: %s}\n", leafURL, rmin, rmax)
	case "stock":
		// What a plain nats-server leaf does: retry every `reconnect`.
		conf := filepath.Join(sd, "leaf.conf")
		text := fmt.Sprintf("leafnodes {\n  reconnect: %q\n  remotes = [ { urls: [%q] } ]\n}\n", rmin.String(), leafURL)
		if err := os.WriteFile(conf, []byte(text), 0o640); err != nil {
			return nil, err
		}
		y += "nats_config: " + conf + "\n"
	default:
		return nil, fmt.Errorf("unknown mode %q (agent, stock)", mode)
	}
	return agent.ParseConfig(filepath.Join(sd, "agent.yaml"), []byte(y))
}

// fillBacklogs publishes the readings a site collects during the outage.
func fillBacklogs(agents []*agent.Agent, k int) error {
	for _, a := range agents {
		nc, err := nats.Connect(a.ClientURL())
		if err != nil {
			return err
		}
		js, _ := jetstream.New(nc)
		for j := range k {
			if _, err := js.PublishAsync("telemetry.sim", fmt.Appendf(nil, `{"seq":%d,"v":3.5}`, j)); err != nil {
				nc.Close()
				return err
			}
		}
		select {
		case <-js.PublishAsyncComplete():
		case <-time.After(30 * time.Second):
			nc.Close()
			return fmt.Errorf("backlog on %s not acknowledged locally", a.Config().Site)
		}
		nc.Close()
	}
	return nil
}

// tracer is an agent's log handler in trace mode: it keeps, with their
// time, only the lines that tell the link's story (the link manager's
// decisions and the embedded server's leaf dials), in memory, because
// 100 agents logging nats-server debug lines to a terminal would be the
// bottleneck being measured.
type tracer struct {
	mu sync.Mutex
	ev []traceEvent
	// to is where a handler derived by WithAttrs keeps its lines; link
	// marks the link's logger (component uplink), all of whose lines count.
	to   *tracer
	link bool
}

type traceEvent struct {
	at   time.Time
	line string
}

// traced are message prefixes of nats-server worth keeping below warning
// level: the leaf dial/handshake lines.
var traced = []string{"Trying to connect as leafnode", "Error trying to connect as leafnode", "Leafnode connection", "Will not attempt", "Reloaded: LeafNode Remote"}

func (t *tracer) Enabled(context.Context, slog.Level) bool { return true }

func (t *tracer) Handle(_ context.Context, r slog.Record) error {
	if r.Level < slog.LevelWarn && !t.link && !slices.ContainsFunc(traced, func(p string) bool { return strings.HasPrefix(r.Message, p) }) {
		return nil
	}
	var b strings.Builder
	if t.link {
		b.WriteString("uplink: ")
	}
	b.WriteString(r.Message)
	r.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	to := t.root()
	to.mu.Lock()
	to.ev = append(to.ev, traceEvent{r.Time, b.String()})
	to.mu.Unlock()
	return nil
}

func (t *tracer) root() *tracer {
	if t.to != nil {
		return t.to
	}
	return t
}

// WithAttrs keeps one timeline per agent; only the component matters here.
func (t *tracer) WithAttrs(as []slog.Attr) slog.Handler {
	d := &tracer{to: t.root(), link: t.link}
	for _, a := range as {
		if a.Key == "component" && a.Value.String() == "uplink" {
			d.link = true
		}
	}
	return d
}

func (t *tracer) WithGroup(string) slog.Handler { return t }

func (t *tracer) events() []traceEvent {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.ev)
}

// startAgent runs an agent until ctx ends, wg counting it, and returns it
// once it is ready.
func startAgent(ctx context.Context, wg *sync.WaitGroup, cfg *agent.Config, log *slog.Logger, deadline time.Duration) (*agent.Agent, error) {
	a := agent.New(cfg, log, nil)
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := a.Run(ctx); err != nil {
			fmt.Fprintf(os.Stderr, "agent %s: %v\n", cfg.Site, err)
		}
	}()
	select {
	case <-a.Ready():
		return a, nil
	case <-time.After(deadline):
		return nil, fmt.Errorf("agent %s not ready in %s", cfg.Site, deadline)
	}
}

func countConnected(agents []*agent.Agent) int {
	c := 0
	for _, a := range agents {
		if a.Server().NumLeafNodes() > 0 {
			c++
		}
	}
	return c
}

func waitUntil(d time.Duration, cond func() bool) error {
	end := time.Now().Add(d)
	for !cond() {
		if time.Now().After(end) {
			return fmt.Errorf("timed out after %s", d)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

// hubProc is the hub child process.
type hubProc struct{ cmd *exec.Cmd }

func startHub(dir string, clientPort, leafPort int) (*hubProc, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, "hub", "-client", strconv.Itoa(clientPort), "-leaf", strconv.Itoa(leafPort), "-dir", filepath.Join(dir, "hub"))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	// The child prints one line once it accepts connections.
	line := make([]byte, 64)
	if _, err := out.Read(line); err != nil {
		_ = cmd.Process.Kill()
		return nil, fmt.Errorf("hub did not start: %w", err)
	}
	return &hubProc{cmd: cmd}, nil
}

// cpu is the child's user+system time from /proc: the hub's own work only.
func (h *hubProc) cpu() time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", h.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ
}

func (h *hubProc) stop() {
	if h.cmd.ProcessState != nil {
		return
	}
	_ = h.cmd.Process.Signal(syscall.SIGTERM)
	_ = h.cmd.Wait()
}

// runHub is the hub child: JetStream domain "hub", the EDGE ingest stream
// and the EDGE_STATUS fleet table, until SIGTERM.
func runHub(args []string) error {
	fs := flag.NewFlagSet("hub", flag.ExitOnError)
	cp := fs.Int("client", 4223, "client port")
	lp := fs.Int("leaf", 7422, "leafnode port")
	dir := fs.String("dir", "", "store dir")
	_ = fs.Parse(args)
	s, err := server.NewServer(&server.Options{
		ServerName: "sim-hub", Host: "127.0.0.1", Port: *cp, NoSigs: true, NoLog: true,
		JetStream: true, JetStreamDomain: "hub", StoreDir: *dir,
		// NoAdvertise: a stock leaf would learn this address and redial it
		// directly, around the -fault wan proxy.
		LeafNode: server.LeafNodeOpts{Host: "127.0.0.1", Port: *lp, NoAdvertise: true},
	})
	if err != nil {
		return err
	}
	go s.Start()
	if !s.ReadyForConnections(30 * time.Second) {
		return fmt.Errorf("not ready")
	}
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		return err
	}
	js, _ := jetstream.New(nc)
	ctx := context.Background()
	if _, err := hubops.EnsureHubStream(ctx, js, hubops.HubStreamConfig("EDGE", "edge", 2*time.Minute)); err != nil {
		return err
	}
	if _, err := hubops.EnsureStatusStream(ctx, js, "edge"); err != nil {
		return err
	}
	nc.Close()
	fmt.Println("ready")
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	s.Shutdown()
	s.WaitForShutdown()
	return nil
}

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func envInt(k string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(k)); err == nil && v > 0 {
		return v
	}
	return def
}
