package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/edge-agent/edge-agent/internal/powercut"
	"github.com/edge-agent/edge-agent/internal/wanfault"
)

// env is one scenario's world: a hub, maybe a WAN proxy or a loop disk, the
// agent process and the publisher.
type env struct {
	opts *options
	sc   *scenario
	dir  string
	site string
	rng  *rand.Rand

	hub     *hub
	hubNC   *nats.Conn
	hubJS   jetstream.JetStream
	proxies []*wanfault.Proxy
	disk    *powercut.Disk
	agent   *agentProc
	pub     *publisher

	local, e2e waiter
	recovery   time.Duration // worst heal-to-flow time
	cuts       []time.Time   // power cuts, to judge loss against the sync interval
	notes      []string
	// startupKill: the last restart is to be killed before it is ready.
	startupKill bool
}

func (e *env) stateDir() string { return filepath.Join(e.dir, "state") }

func (e *env) logf(format string, args ...any) {
	if e.opts.verbose {
		fmt.Fprintf(os.Stderr, "chaos: %s: %s\n", e.sc.name, fmt.Sprintf(format, args...))
	}
}

func (e *env) note(format string, args ...any) {
	e.notes = append(e.notes, fmt.Sprintf(format, args...))
}

// setup starts the hub, the proxies, the disk, the agent and the load.
func (e *env) setup(ctx context.Context) error {
	var err error
	if e.hub, err = newHub(e.dir, e.sc.hubNodes); err != nil {
		return err
	}
	if e.hubNC, e.hubJS, err = e.hub.connect(); err != nil {
		return err
	}
	if err := e.hub.ensureStream(ctx, e.hubJS); err != nil {
		return err
	}
	// Arrivals at the hub, for end-to-end recovery times.
	if _, err := e.hubNC.Subscribe("edge."+e.site+".>", func(m *nats.Msg) {
		var p payload
		if json.Unmarshal(m.Data, &p) == nil && p.ID != "" && e.pub != nil {
			e.e2e.observe(e.pub.sentAt(p.ID))
		}
	}); err != nil {
		return err
	}
	var urls []string
	for _, a := range e.hub.leafAddrs() {
		if !e.sc.proxy {
			urls = append(urls, "nats://"+a)
			continue
		}
		p, err := wanfault.Start(a)
		if err != nil {
			return err
		}
		e.proxies = append(e.proxies, p)
		urls = append(urls, p.URL("nats"))
	}
	if e.sc.diskSize > 0 {
		if e.disk, err = powercut.Create(filepath.Join(e.dir, "disk.img"), e.stateDir(), e.sc.diskSize); err != nil {
			return err
		}
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	cfgPath := filepath.Join(e.dir, "agent.yaml")
	cfg := fmt.Sprintf(`# written by the chaos harness
site: %s
state_dir: %s
listen: 127.0.0.1:%d
control_socket: %s
metrics_listen: ""
buffer: {sync: %s, max_bytes: %s, max_age: %s}
uplink:
  hub_urls: [%s]
  reconnect: %s
  bandwidth: %s
sensors:
  - {name: chaos-sim, driver: sim, interval: 200ms}
`, e.site, e.stateDir(), port, filepath.Join(e.dir, "agent.sock"), e.sc.sync, e.sc.maxBytes(), e.sc.maxAge(), strings.Join(urls, ", "), e.opts.reconnect, e.sc.uplinkBandwidth())
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return err
	}
	e.agent = &agentProc{bin: e.opts.bin, cfgPath: cfgPath, logPath: filepath.Join(e.dir, "agent.log"), url: fmt.Sprintf("nats://127.0.0.1:%d", port)}
	if e.sc.testClock {
		e.agent.env = []string{"EDGE_AGENT_TEST_CLOCK_FILE=" + e.clockFile()}
	}
	first := e.local.arm(time.Now())
	firstHub := e.e2e.arm(time.Now())
	if err := e.agent.start(); err != nil {
		return err
	}
	if err := e.agent.waitReady(ctx, 60*time.Second); err != nil {
		return err
	}
	if e.pub, err = newPublisher(e.agent.url, e.site, filepath.Join(e.dir, "acked.log"), e.local.observe); err != nil {
		return err
	}
	if err := e.pub.run(ctx, 2, 5*time.Millisecond); err != nil {
		return err
	}
	if err := waitCh(ctx, first, 30*time.Second); err != nil {
		return fmt.Errorf("no publish acknowledged by the agent within 30s of ready: %w", err)
	}
	if e.opts.hubAudit {
		if err := waitCh(ctx, firstHub, 60*time.Second); err != nil {
			return fmt.Errorf("nothing reached the hub stream %s within 60s (is the forwarder wired into this build? -local-only audits the local streams only): %w", hubStream, err)
		}
	}
	return nil
}

func waitCh(ctx context.Context, ch <-chan struct{}, d time.Duration) error {
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return fmt.Errorf("timed out after %s", d)
	}
}

// sleep waits d, or less if ctx ends.
func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// between is a random duration in [lo, hi).
func (e *env) between(lo, hi time.Duration) time.Duration {
	return lo + time.Duration(e.rng.Int64N(int64(hi-lo)))
}

// arm starts a recovery measurement at heal.
func (e *env) arm(heal time.Time) <-chan struct{} {
	if e.opts.hubAudit {
		return e.e2e.arm(heal)
	}
	return e.local.arm(heal)
}

// await waits for data sent after heal to arrive (at the hub, or locally
// with -local-only) and records the time it took.
func (e *env) await(ctx context.Context, ch <-chan struct{}, heal time.Time, what string) error {
	if err := waitCh(ctx, ch, e.opts.recoveryLimit); err != nil {
		return fmt.Errorf("no recovery after %s: nothing sent after it arrived within %s (%w); agent log %s", what, e.opts.recoveryLimit, err, e.agent.logPath)
	}
	if d := time.Since(heal); d > e.recovery {
		e.recovery = d
	}
	return nil
}

// restart starts the agent after a kill and waits for recovery.
func (e *env) restart(ctx context.Context, what string) error {
	heal := time.Now()
	ch := e.arm(heal)
	if err := e.agent.start(); err != nil {
		return err
	}
	return e.await(ctx, ch, heal, what)
}

// heal undoes every fault still in force and makes sure the agent runs.
func (e *env) heal(ctx context.Context) error {
	for _, p := range e.proxies {
		p.Clear()
		if err := p.Restore(); err != nil {
			return err
		}
	}
	for i, n := range e.hub.nodes {
		if n.srv == nil {
			if err := e.hub.start(i); err != nil {
				return err
			}
		}
	}
	if !e.agent.running() {
		if err := e.agent.start(); err != nil {
			return err
		}
	}
	if err := e.agent.waitReady(ctx, 60*time.Second); err != nil {
		return err
	}
	heal := time.Now()
	return e.await(ctx, e.arm(heal), heal, "the final heal")
}

// drain waits until the hub holds every acknowledged id the local streams
// hold, then reads both sides. It gives up at the drain limit, or when the
// hub made no progress for a third of it: a stuck forwarder is a finding,
// not something to wait out. A hub cluster that just lost a node may not
// answer the audit's reads for a while (no responders while its consumer
// finds a leader): that is retried until the drain limit, since the
// verdict is about the agent, not the audit's timing.
func (e *env) drain(ctx context.Context) (local, hubc *contents, err error) {
	acked := e.pub.ackedIDs()
	deadline := time.Now().Add(e.opts.drainLimit)
	best, progress := -1, time.Now()
	for {
		if local, err = readLocal(ctx, e.agent.url); err != nil {
			return nil, nil, err
		}
		if !e.opts.hubAudit {
			return local, nil, nil
		}
		if hubc, err = readHub(ctx, e.hubJS, e.site); err != nil {
			if time.Now().After(deadline) || ctx.Err() != nil {
				return nil, nil, err
			}
			e.logf("drain: reading the hub: %v (retrying)", err)
			sleep(ctx, time.Second)
			continue
		}
		missing := 0
		for _, id := range acked {
			if hubc.ids[id] == 0 && local.ids[id] > 0 {
				missing++
			}
		}
		if best < 0 || missing < best {
			best, progress = missing, time.Now()
		}
		if missing == 0 || time.Now().After(deadline) || time.Since(progress) > e.opts.drainLimit/3 {
			return local, hubc, nil
		}
		e.logf("drain: %d acked messages not at the hub yet", missing)
		sleep(ctx, time.Second)
	}
}

func (e *env) close() {
	if e.agent != nil {
		e.agent.kill()
	}
	for _, p := range e.proxies {
		p.Close()
	}
	if e.hubNC != nil {
		e.hubNC.Close()
	}
	if e.hub != nil {
		e.hub.close()
	}
	if e.disk != nil {
		if err := e.disk.Close(); err != nil {
			fmt.Fprintf(os.Stderr, "chaos: %s: %v\n", e.sc.name, err)
		}
	}
}

// errSkip marks a scenario this machine cannot run (e.g. not root).
var errSkip = errors.New("skipped")

// lossBeyondInterval counts acked messages missing locally that were
// acknowledged more than the sync interval (+1s of slack for the kernel's
// and the test's timing) before the power cut that followed them: under
// `buffer.sync: <interval>` only the last interval may be lost. oldest is
// the largest ack-to-cut time among all lost messages.
func (e *env) lossBeyondInterval(local *contents) (n int, oldest time.Duration) {
	interval, err := time.ParseDuration(e.sc.sync)
	if err != nil {
		return 0, 0
	}
	for _, id := range e.pub.ackedIDs() {
		if local.ids[id] > 0 {
			continue
		}
		at := e.pub.ackedAt(id)
		for _, cut := range e.cuts {
			if cut.After(at) {
				oldest = max(oldest, cut.Sub(at))
				if cut.Sub(at) > interval+time.Second {
					n++
				}
				break
			}
		}
	}
	return n, oldest
}
