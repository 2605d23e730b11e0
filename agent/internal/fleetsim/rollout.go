package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/edge-agent/edge-agent/agent"
	"github.com/edge-agent/edge-agent/agent/fleetconfig"
	"github.com/edge-agent/edge-agent/uplink/hubops"
)

// simulateRollout is -fault config: n agents in group sim with remote
// config on, against the hub child. A fragment whose sensor fails is
// staged 10%,50%,100% with --abort-on 10%: it must roll back in wave 1,
// stop there and leave no rollout key; a good one must reach every site.
// It prints how long each took.
func simulateRollout(n int, deadline time.Duration) error {
	dir, err := os.MkdirTemp("", "fleetsim-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	clientPort, leafPort := freePort(), freePort()
	hub, err := startHub(dir, clientPort, leafPort)
	if err != nil {
		return err
	}
	defer hub.stop()
	nc, err := nats.Connect(fmt.Sprintf("nats://127.0.0.1:%d", clientPort))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	kv, err := fleetconfig.EnsureBucket(ctx, js, 1)
	if err != nil {
		return err
	}

	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	agents := make([]*agent.Agent, n)
	for i := range n {
		site := fmt.Sprintf("sim-%04d", i)
		sd := filepath.Join(dir, site)
		if err := os.MkdirAll(sd, 0o750); err != nil {
			return err
		}
		y := fmt.Sprintf("site: %s\nstate_dir: %s\nlisten: 127.0.0.1:0\ncontrol_socket: %s\nmetrics_listen: \"\"\nbuffer: {sync: 1s, max_bytes: 16MiB}\n"+
			"uplink:\n  hub_urls: [nats://127.0.0.1:%d]\n  reconnect: {min: 100ms, max: 1s}\ngroups: [sim]\nremote_config: {enabled: true, gate: 5s}\n"+
			"sensors:\n  - {name: room, driver: sim, interval: 500ms}\n", site, sd, filepath.Join(sd, "agent.sock"), leafPort)
		path := filepath.Join(sd, "agent.yaml")
		if err := os.WriteFile(path, []byte(y), 0o600); err != nil {
			return err
		}
		cfg, err := agent.BootConfig(path)
		if err != nil {
			return err
		}
		// Only live-applicable keys are rolled out: no restarts here.
		if agents[i], err = startAgent(ctx, &wg, cfg, log, deadline); err != nil {
			return err
		}
	}
	if err := waitUntil(deadline, func() bool { return countConnected(agents) == n }); err != nil {
		return fmt.Errorf("initial connect: %d of %d: %w", countConnected(agents), n, err)
	}
	reports := hubops.FleetReports(js, "edge")
	if err := waitUntil(deadline, func() bool { r, _ := reports(ctx); return len(r) == n }); err != nil {
		return fmt.Errorf("reports at the hub: %w", err)
	}

	run := func(data string) (time.Duration, error) {
		r := &fleetconfig.Rollout{KV: kv, Group: "sim", Data: []byte(data), Waves: []float64{0.1, 0.5, 1}, AbortOn: 0.1,
			Reports: reports, Wait: deadline, Poll: 200 * time.Millisecond, Out: os.Stdout}
		t0 := time.Now()
		err := r.Run(ctx)
		return time.Since(t0), err
	}
	fmt.Printf("rollout over %d sites (gate 5s), waves 10%%,50%%,100%%, abort-on 10%%\n", n)
	took, err := run("sensors:\n  - {name: probe, driver: sim, fail_every: 1, interval: 500ms}\n")
	var ab *fleetconfig.ErrAborted
	if !errors.As(err, &ab) || ab.Wave != 1 {
		return fmt.Errorf("a failing fragment was not stopped in wave 1: %v", err)
	}
	latest, err := fleetconfig.Latest(ctx, kv)
	if err != nil {
		return err
	}
	for k := range latest {
		if _, err := kv.Get(ctx, k); strings.HasPrefix(k, "rollout.") && err == nil {
			return fmt.Errorf("%s left behind by the aborted rollout", k)
		}
	}
	fmt.Printf("bad fragment: aborted in wave 1 after %s (%d of %d rolled back), rollout keys deleted\n", took.Round(time.Millisecond), ab.Failed, ab.Of)
	took, err = run("log_level: debug\n")
	if err != nil {
		return fmt.Errorf("good fragment: %w", err)
	}
	for _, a := range agents {
		if a.Config().LogLevel != "debug" {
			return fmt.Errorf("%s runs log_level %s after the rollout", a.Config().Site, a.Config().LogLevel)
		}
	}
	fmt.Printf("good fragment: on all %d sites in %s\n", n, took.Round(time.Millisecond))
	return nil
}
