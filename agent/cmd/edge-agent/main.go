// Command edge-agent is the store and factory edge daemon: an embedded NATS
// leaf server with a local JetStream buffer, sensor sampling and
// store-and-forward to the hub. Subcommands are thin; the work is in agent.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"go.yaml.in/yaml/v3"

	"github.com/edge-agent/edge-agent/agent"
	"github.com/edge-agent/edge-agent/uplink"
)

const defaultConfig = "/etc/edge-agent/agent.yaml"

const usage = `edge-agent: NATS leaf node, local buffer and sensor sampler for one site.

Usage:
  edge-agent run [--config FILE]        run the daemon (systemd: Type=notify)
  edge-agent check-config [FILE]        validate and print the effective config (secrets redacted)
  edge-agent version                    version, commit, Go and nats-server versions, platform
  edge-agent demo [--dir DIR]           a development hub plus an agent with simulated sensors
  edge-agent status [--config FILE] [--socket PATH] [--json] [--watch [INTERVAL]]
                                        the running agent's health (exit 0 healthy, 1 degraded, 2 down)
  edge-agent doctor [--config FILE] [--socket PATH] [--json]
                                        check config, store, devices, clock, power and the way to the hub
  edge-agent buffer ack-loss [--config FILE] [--socket PATH]
                                        acknowledge readings lost to damage (status is down until then)
  edge-agent sensors list               registered sensor drivers
  edge-agent fleet --server HUB [--creds FILE] [--json] [--stale 5m] [--metrics HOST:PORT]
                                        every site the hub heard from, worst first
  edge-agent hub init --server URL [...] create or verify the hub stream (edge-agent hub for all options)
  edge-agent fleet config set|get|history|diff|status|rollout --server HUB ...
                                        desired config from the hub (edge-agent fleet config for all options)
  edge-agent sensors sample DRIVER      a commented config snippet for a driver
  edge-agent sensors scan               I2C buses and chips, GPIO lines, 1-Wire devices; a config snippet

FILE defaults to ` + defaultConfig + `.
Exit codes: 0 ok, 1 error, 78 bad configuration (systemd does not restart on it).
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// commands are the subcommands with their own arguments and output.
var commands = map[string]func(args []string, stdout, stderr io.Writer) int{
	"check-config": cmdCheckConfig,
	"demo":         cmdDemo,
	"status":       cmdStatus,
	"doctor":       cmdDoctor,
	"sensors":      cmdSensors,
	"hub":          cmdHub,
	"buffer":       cmdBuffer,
	"fleet":        cmdFleet,
}

// newFlags is a subcommand's flag set: usage and errors go to stderr, and
// a bad flag is an error the command returns as exit 2.
func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd, rest := args[0], args[1:]
	if c, ok := commands[cmd]; ok {
		return c(rest, stdout, stderr)
	}
	switch cmd {
	case "run":
		return cmdRun(rest, stderr)
	case "version", "--version":
		fmt.Fprint(stdout, agent.VersionString())
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "edge-agent: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
}

// exitFor maps an error to the exit code systemd and scripts rely on.
func exitFor(err error, stderr io.Writer) int {
	if err == nil {
		return 0
	}
	fmt.Fprintln(stderr, "edge-agent:", uplink.RedactText(err.Error()))
	if errors.Is(err, agent.ErrRestart) {
		return agent.ExitRestart
	}
	var ce *agent.ConfigError
	if errors.As(err, &ce) {
		return agent.ExitConfig
	}
	return 1
}

func cmdRun(args []string, stderr io.Writer) int {
	fs := newFlags("run", stderr)
	path := fs.String("config", defaultConfig, "config file")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg, err := agent.BootConfig(*path)
	if err != nil {
		return exitFor(err, stderr)
	}
	level := new(slog.LevelVar)
	log := agent.NewLogger(stderr, cfg.LogFormat, level)
	steady := agent.RuntimeDefaults(log)
	a := agent.New(cfg, log, level)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() {
		select {
		case <-a.Ready():
			steady()
		case <-ctx.Done():
		}
	}()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for range hup {
			next, err := agent.LoadEffectiveConfig(*path)
			if err != nil {
				log.Error("reload: config rejected; keeping the running config", "err", err)
				continue
			}
			a.Reload(next)
		}
	}()
	return exitFor(a.Run(ctx), stderr)
}

func cmdCheckConfig(args []string, stdout, stderr io.Writer) int {
	path := defaultConfig
	if len(args) > 0 {
		path = args[0]
	}
	cfg, err := agent.LoadConfig(path)
	if err != nil {
		return exitFor(err, stderr)
	}
	if err := agent.CheckServer(cfg); err != nil {
		return exitFor(err, stderr)
	}
	out, err := yaml.Marshal(cfg.Redacted())
	if err != nil {
		return exitFor(err, stderr)
	}
	fmt.Fprintf(stdout, "# %s is valid; effective configuration (defaults filled in, secrets redacted):\n%s", path, out)
	return 0
}
