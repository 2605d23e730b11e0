package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/edge-agent/edge-agent/buffer"
	"github.com/edge-agent/edge-agent/uplink"
)

// StopTimeout bounds a graceful stop; systemd's TimeoutStopSec is longer.
const StopTimeout = 20 * time.Second

// Agent is one running edge agent.
type Agent struct {
	log   *slog.Logger
	level *slog.LevelVar

	mu  sync.Mutex
	cfg *Config

	srv     *server.Server
	srvOpts *server.Options // what the server runs with: the agent's own login
	gate    *uplink.Gate    // the uplink remote's, from serverOptions until shutdown
	nc      *nats.Conn
	js      jetstream.JetStream
	lock    *os.File
	started time.Time
	// salvaged is what the block-file check found before the server
	// opened the store; setupBuffer records it.
	salvaged []buffer.Loss
	// openedState is state.db, opened while the server starts (openState).
	openedState func() (*buffer.State, error)
	ready       chan struct{}
	// checked is closed once the start's check of the local streams
	// against state.db is done (setupBuffer); holdCheck, set by tests
	// only, runs before that check.
	checked   chan struct{}
	holdCheck func(context.Context)

	// parts are the long-lived loops started after the server is ready.
	parts []part

	// One field per part; each is set up and owned by its wire_*.go file.
	buf     *bufferPart
	sensors *sensorsPart
	up      *uplinkPart
	hb      *heartbeatPart
	ctl     *controlPart
	rc      *remotePart
}

// part is a long-lived loop owned by the agent; restartable parts are
// restarted on SIGHUP when their config changed.
type part struct {
	name string
	run  func(ctx context.Context) error
}

// New prepares an agent; nothing starts until Run.
func New(cfg *Config, log *slog.Logger, level *slog.LevelVar) *Agent {
	if level == nil {
		level = new(slog.LevelVar)
	}
	if l, err := parseLevel(cfg.LogLevel); err == nil {
		level.Set(l)
	}
	return &Agent{cfg: cfg, log: log, level: level, ready: make(chan struct{}), checked: make(chan struct{})}
}

// Ready is closed once local apps can store readings: the server and
// JetStream are up, the agent's streams exist, and the control socket
// listens (unless it cannot, which is logged). It is systemd's READY=1.
func (a *Agent) Ready() <-chan struct{} { return a.ready }

// Checked is closed once the start's check of the local streams against
// state.db is done, right after Ready: the damage it finds is recorded,
// and forwarding, replays and the age limit begin.
func (a *Agent) Checked() <-chan struct{} { return a.checked }

// ClientURL is where local apps connect (resolves port 0 after start).
func (a *Agent) ClientURL() string { return a.srv.ClientURL() }

// Server exposes the embedded server to tests and to the demo hub wiring.
func (a *Agent) Server() *server.Server { return a.srv }

// Config returns the config in force.
func (a *Agent) Config() *Config {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.cfg
}

// Run starts everything, blocks until ctx is cancelled or a part fails, then
// stops gracefully within StopTimeout.
func (a *Agent) Run(ctx context.Context) (err error) {
	cfg := a.Config()
	a.started = time.Now()
	a.log.Info("edge-agent starting", "version", Version, "site", cfg.Site, "config", cfg.Path, "state_dir", cfg.StateDir, "pid", os.Getpid())
	if a.lock, err = lockStateDir(cfg.StateDir); err != nil {
		return err
	}
	defer a.lock.Close()
	if a.salvaged, err = buffer.SalvageStore(cfg.StateDir, a.log.With("component", "buffer")); err != nil {
		return err
	}

	opts, gate, err := serverOptions(cfg, a.log)
	if err != nil {
		return err
	}
	a.srvOpts, a.gate = opts, gate
	defer a.shutdownServer()
	if a.srv, err = newServer(cfg, opts); err != nil {
		return err
	}
	a.srv.SetLoggerV2(natsLogger{a.log.With("component", "nats-server")}, true, false, false)
	if a.gate != nil {
		a.gate.Start()
	}
	go a.srv.Start()
	a.openState(cfg)
	defer a.closeBuffer()
	if !waitListening(a.srv, 30*time.Second) {
		return fmt.Errorf("embedded nats-server did not become ready in 30s on %s (is the port in use? see the nats-server lines above)", cfg.Listen)
	}
	if a.nc, err = a.connectLocal(cfg); err != nil {
		return err
	}
	defer a.nc.Close()
	if a.js, err = jetstream.New(a.nc); err != nil {
		return err
	}
	if err := a.setup(ctx, cfg); err != nil {
		return err
	}

	runCtx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, len(a.parts))
	var wg sync.WaitGroup
	for _, p := range a.parts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := p.run(runCtx); err != nil && runCtx.Err() == nil {
				errc <- fmt.Errorf("%s: %w", p.name, err)
			}
		}()
	}
	close(a.ready)
	a.log.Info("edge-agent ready", "listen", a.srv.ClientURL(), "domain", cfg.Site, "uplink", cfg.Uplink != nil, "sensors", len(cfg.Sensors))

	select {
	case <-ctx.Done():
	case err = <-errc:
		if errors.Is(err, ErrRestart) {
			a.log.Info("edge-agent restarting for a remote config change (exit 75)")
		} else {
			a.log.Error("part failed; stopping", "err", err)
		}
	}
	a.log.Info("edge-agent stopping")
	cancel()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(StopTimeout):
		a.log.Error("parts did not stop in time; shutting the server down anyway", "timeout", StopTimeout)
	}
	// Drain flushes what our own connection still has in flight before the
	// server goes away.
	_ = a.nc.Drain()
	return err
}

func (a *Agent) shutdownServer() {
	if a.gate != nil {
		// First: Shutdown waits for a CONNECT the gate holds, and the
		// link that would let it through may never have run.
		a.gate.Close()
	}
	if a.srv == nil {
		return
	}
	a.srv.Shutdown()
	a.srv.WaitForShutdown()
}

// setup runs once the server is ready: each wire_*.go contributes parts.
func (a *Agent) setup(ctx context.Context, cfg *Config) error {
	for _, step := range []func(context.Context, *Config) error{a.setupBuffer, a.setupSensors, a.setupUplink, a.setupHeartbeat, a.setupControl, a.setupRemoteConfig} {
		if err := step(ctx, cfg); err != nil {
			return err
		}
	}
	return nil
}

// Reload applies what can change without a restart and says what cannot.
func (a *Agent) Reload(next *Config) {
	a.mu.Lock()
	prev := a.cfg
	a.cfg = next
	a.mu.Unlock()
	if l, err := parseLevel(next.LogLevel); err == nil && next.LogLevel != prev.LogLevel {
		a.level.Set(l)
		a.log.Info("reload: log level changed", "level", next.LogLevel)
	}
	a.reloadSensors(prev, next)
	for _, k := range restartKeys(prev, next) {
		a.log.Warn("reload: this change needs a restart to take effect (`systemctl restart edge-agent`)", "key", k)
	}
}

func (a *Agent) addPart(name string, run func(ctx context.Context) error) {
	a.parts = append(a.parts, part{name: name, run: run})
}

// connectLocal opens the agent's own connection to the embedded server,
// which the sampler, the forwarder and the control API share. It dials the
// client listener over loopback TCP: nats.go's in-process connection is a
// net.Pipe, which hands each buffer between the client's and the server's
// goroutines synchronously, and on it the forwarder drained a backlog
// markedly slower in BenchmarkDrain.
// Should the listener be unreachable from the device itself (a firewall on
// its own address), the in-process connection still works.
func (a *Agent) connectLocal(cfg *Config) (*nats.Conn, error) {
	// Its inboxes stay on the site (uplink.Protect): they carry the buffer.
	copts := []nats.Option{nats.Name("edge-agent"), nats.MaxReconnects(-1), nats.CustomInboxPrefix(uplink.LocalInboxPrefix)}
	if cfg.LocalAuth.User != "" {
		copts = append(copts, nats.UserInfo(cfg.LocalAuth.User, cfg.LocalAuth.Password))
	}
	if cfg.LocalAuth.Token != "" {
		copts = append(copts, nats.Token(cfg.LocalAuth.Token))
	}
	if u, pw, ok := agentLogin(a.srvOpts); ok {
		copts = append(copts, nats.UserInfo(u, pw))
	}
	url := localURL(a.srv.Addr())
	nc, err := nats.Connect(url, copts...)
	if err == nil {
		return nc, nil
	}
	a.log.Warn("cannot connect to the embedded server over TCP; using an in-process connection (slower forwarding)", "url", url, "err", err)
	if nc, err = nats.Connect("", append(copts, nats.InProcessServer(a.srv))...); err != nil {
		return nil, fmt.Errorf("in-process connection: %w", err)
	}
	return nc, nil
}

// localURL is the address the device itself reaches the client listener
// on: 127.0.0.1 when the server listens on every address. Go reports
// 0.0.0.0 as the dual-stack [::], which accepts IPv4 too, and gateways
// with IPv6 disabled have no ::1.
func localURL(addr net.Addr) string {
	ta, ok := addr.(*net.TCPAddr)
	if !ok {
		return "nats://" + addr.String()
	}
	ip := ta.IP
	if ip.IsUnspecified() {
		ip = net.IPv4(127, 0, 0, 1)
	}
	return "nats://" + net.JoinHostPort(ip.String(), strconv.Itoa(ta.Port))
}
