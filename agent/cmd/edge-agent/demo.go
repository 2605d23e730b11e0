package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/edge-agent/edge-agent/agent"
	"github.com/edge-agent/edge-agent/internal/jsclient"
	"github.com/edge-agent/edge-agent/sensors"
	"github.com/edge-agent/edge-agent/uplink/hubops"
)

// cmdDemo runs a development hub and an agent in one process so a newcomer
// sees readings flow without installing anything: `make run`.
func cmdDemo(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("demo", stderr)
	dir := fs.String("dir", filepath.Join(os.TempDir(), "edge-agent-demo"), "state for the demo hub and agent")
	site := fs.String("site", "demo-store", "site id of the demo agent")
	withModbus := fs.Bool("modbus", true, "also simulate a Modbus TCP energy meter and read it")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	level := new(slog.LevelVar)
	log := agent.NewLogger(stderr, "text", level)

	leafPort := freePort(7422)
	hub, err := server.NewServer(&server.Options{
		ServerName: "dev-hub", Host: "127.0.0.1", Port: freePort(4223),
		JetStream: true, JetStreamDomain: "hub", StoreDir: filepath.Join(*dir, "hub"),
		LeafNode: server.LeafNodeOpts{Host: "127.0.0.1", Port: leafPort},
		NoSigs:   true, NoLog: true,
	})
	if err != nil {
		return exitFor(fmt.Errorf("dev hub: %w", err), stderr)
	}
	go hub.Start()
	defer func() { hub.Shutdown(); hub.WaitForShutdown() }()
	if !hub.ReadyForConnections(10 * time.Second) {
		return exitFor(fmt.Errorf("dev hub did not start"), stderr)
	}
	if err := demoHubStream(hub); err != nil {
		return exitFor(err, stderr)
	}
	var modbusAddr, modbusEntry string
	if *withModbus {
		sim, addr, entry, err := demoModbus()
		if err != nil {
			return exitFor(err, stderr)
		}
		defer sim.Close()
		modbusAddr, modbusEntry = addr, entry
	}
	leafURL := fmt.Sprintf("nats://127.0.0.1:%d", leafPort)
	cfgPath := filepath.Join(*dir, "agent.yaml")
	cfgText := fmt.Sprintf(`# written by edge-agent demo
site: %s
state_dir: %s
listen: 127.0.0.1:%d
control_socket: %s
metrics_listen: ""
uplink:
  hub_urls: [%s]
sensors:
  - {name: coldroom, driver: sim, interval: 1s, seed: 7, base: {temperature: 3.5}, unit: C, alert_above: 5}
  - {name: freezer, driver: sim, interval: 2s, seed: 9, base: {temperature: -18}, unit: C}
%s`, *site, filepath.Join(*dir, "agent"), freePort(4222), filepath.Join(*dir, "agent.sock"), leafURL, modbusEntry)
	if err := os.MkdirAll(*dir, 0o750); err != nil {
		return exitFor(err, stderr)
	}
	if err := os.WriteFile(cfgPath, []byte(cfgText), 0o640); err != nil {
		return exitFor(err, stderr)
	}
	cfg, err := agent.LoadConfig(cfgPath)
	if err != nil {
		return exitFor(err, stderr)
	}
	// The printed commands must work as printed: the binary's own path,
	// since bin/edge-agent from `make run` is not on PATH.
	exe, err := os.Executable()
	if err != nil {
		exe = os.Args[0]
	}
	a := agent.New(cfg, log, level)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() {
		select {
		case <-a.Ready():
		case <-ctx.Done():
			return
		}
		fmt.Fprintf(stdout, `
=== edge-agent demo is running (Ctrl-C stops it) ===
  dev hub        %s   (JetStream domain "hub", streams EDGE and EDGE_STATUS)
  agent (leaf)   %s   (site %q, JetStream domain %q)
  config         %s

  Each reading that reaches the hub is printed below ("hub <- ...").
  Status:                            %s status --socket %s
  Checks:                            %s doctor --socket %s
  Fleet view at the hub:             %s fleet --server %s
  With the nats CLI (go install %s):
    readings at the hub:             nats sub -s %s 'edge.>'
    local traffic on the site:       nats sub -s %s '>'
    local stream:                    nats stream info TELEMETRY -s %s
%s
`, hub.ClientURL(), a.ClientURL(), cfg.Site, cfg.Site, cfgPath, exe, cfg.ControlSocket, exe, cfg.ControlSocket, exe, hub.ClientURL(),
			NATSCLIModule, hub.ClientURL(), a.ClientURL(), a.ClientURL(), modbusBanner(modbusAddr, a.ClientURL()))
		if err := echoHub(ctx, hub.ClientURL(), stdout); err != nil {
			log.Warn("demo: cannot watch the hub", "err", err)
		}
	}()
	return exitFor(a.Run(ctx), stderr)
}

// NATSCLIModule is the nats CLI the demo's commands use, at the version
// the README names.
const NATSCLIModule = "github.com/nats-io/natscli/nats@v0.5.0"

// echoHub prints what reaches the hub, so `make run` shows store-and-forward
// working without any other tool installed.
func echoHub(ctx context.Context, url string, w io.Writer) error {
	nc, err := nats.Connect(url)
	if err != nil {
		return err
	}
	_, err = nc.Subscribe("edge.>", func(m *nats.Msg) {
		var r sensors.Reading
		if json.Unmarshal(m.Data, &r) != nil || len(r.Values) == 0 {
			fmt.Fprintf(w, "hub <- %-40s %s\n", m.Subject, m.Data)
			return
		}
		keys := make([]string, 0, len(r.Values))
		for k := range r.Values {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var vals []string
		for _, k := range keys {
			vals = append(vals, fmt.Sprintf("%s=%g%s", k, r.Values[k].V, r.Values[k].Unit))
		}
		fmt.Fprintf(w, "hub <- %-40s seq=%d %s (msg-id %s)\n", m.Subject, r.Seq, strings.Join(vals, " "), m.Header.Get("Nats-Msg-Id"))
	})
	if err != nil {
		nc.Close()
		return err
	}
	go func() { <-ctx.Done(); nc.Close() }()
	return nil
}

func demoHubStream(hub *server.Server) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return jsclient.Do(hub.ClientURL(), func(js jetstream.JetStream) error {
		if _, err := hubops.EnsureHubStream(ctx, js, hubops.HubStreamConfig("EDGE", "edge", 2*time.Hour)); err != nil {
			return err
		}
		// The fleet table, so `edge-agent fleet` against the dev hub shows the site.
		_, err := hubops.EnsureStatusStream(ctx, js, "edge")
		return err
	})
}

// freePort prefers the conventional port so the printed commands are the
// usual ones, and falls back to any free port when it is taken.
func freePort(want int) int {
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", want))
	if err != nil {
		l, err = net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return want
		}
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
