package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/edge-agent/edge-agent/agent"
	"github.com/edge-agent/edge-agent/agent/client"
	"github.com/edge-agent/edge-agent/buffer"
)

// watchFlag is --watch with an optional interval: `--watch` or
// `--watch=5s` (or `--watch 5s`, picked up from the first argument).
type watchFlag struct{ every time.Duration }

func (w *watchFlag) String() string   { return w.every.String() }
func (w *watchFlag) IsBoolFlag() bool { return true }
func (w *watchFlag) Set(s string) error {
	if s == "true" {
		w.every = 2 * time.Second
		return nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 100*time.Millisecond {
		return fmt.Errorf("want an interval such as 2s")
	}
	w.every = d
	return nil
}

// isTTY reports whether w is a terminal; NO_COLOR (no-color.org) opts out.
func isTTY(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok || os.Getenv("NO_COLOR") != "" {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// statusTarget is where to ask and, if nobody answers, what to read.
type statusTarget struct{ socket, stateDir string }

// resolveTarget: --socket wins; then the config's control_socket; without a
// readable config, the packaged defaults.
func resolveTarget(socket, config string) statusTarget {
	d := agent.DefaultConfig()
	t := statusTarget{socket: d.ControlSocket, stateDir: d.StateDir}
	if cfg, err := agent.LoadConfig(config); err == nil {
		t = statusTarget{socket: cfg.ControlSocket, stateDir: cfg.StateDir}
	}
	if socket != "" {
		t.socket = socket
	}
	return t
}

func cmdStatus(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("status", stderr)
	config := fs.String("config", defaultConfig, "config file (for control_socket and state_dir)")
	socket := fs.String("socket", "", "control socket (default: control_socket from --config, else /run/edge-agent/agent.sock)")
	asJSON := fs.Bool("json", false, "print the status as JSON")
	var watch watchFlag
	fs.Var(&watch, "watch", "refresh every interval (default 2s) until interrupted")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if watch.every > 0 && fs.NArg() > 0 {
		if err := watch.Set(fs.Arg(0)); err != nil {
			fmt.Fprintf(stderr, "edge-agent status: --watch %s: %v\n", fs.Arg(0), err)
			return 2
		}
	}
	t := resolveTarget(*socket, *config)
	tty := !*asJSON && isTTY(stdout)
	if watch.every == 0 {
		return statusOnce(context.Background(), t, stdout, *asJSON, tty)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	code := 0
	for {
		if tty {
			fmt.Fprint(stdout, "\x1b[H\x1b[2J")
		}
		code = statusOnce(ctx, t, stdout, *asJSON, tty)
		select {
		case <-ctx.Done():
			return code
		case <-time.After(watch.every):
		}
	}
}

// statusOnce prints one status and returns its exit code: 0 healthy,
// 1 degraded, 2 down or not running.
func statusOnce(ctx context.Context, t statusTarget, w io.Writer, asJSON, tty bool) int {
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	s, err := client.FetchStatus(rctx, t.socket)
	now := time.Now()
	switch {
	case err == nil:
	case errors.Is(err, client.ErrNotRunning):
		return notRunning(t, err, w, asJSON, tty, now)
	default:
		fmt.Fprintf(w, "edge-agent status: %v\n", err)
		return agent.ExitDown
	}
	code, warnings := s.Health()
	if asJSON {
		s.State, s.Warnings = agent.StateName(code), warnings
		printJSON(w, s)
		return code
	}
	client.RenderStatus(w, s, now, tty)
	return code
}

// notRunning shows what state.db last recorded; the daemon being down is
// exactly when a technician needs it.
func notRunning(t statusTarget, cause error, w io.Writer, asJSON, tty bool, now time.Time) int {
	var last *agent.Status
	path := filepath.Join(t.stateDir, "state.db")
	st, lastErr := buffer.OpenStateReadOnly(path)
	if lastErr == nil {
		var s agent.Status
		ok, err := st.GetJSON(agent.StatusKey, &s)
		st.Close()
		switch {
		case err != nil:
			lastErr = err
		case !ok:
			lastErr = fmt.Errorf("%s has no status snapshot yet", path)
		default:
			s.Running = false
			last = &s
		}
	}
	if asJSON {
		s := agent.Status{Schema: agent.StatusSchema, Time: now}
		if last != nil {
			s = *last
		}
		code, warnings := s.Health()
		s.State, s.Warnings = agent.StateName(code), warnings
		printJSON(w, s)
		return agent.ExitDown
	}
	// The syscall's own words ("connection refused", "no such file or
	// directory") say whether the socket is stale or was never created.
	var se *os.SyscallError
	if errors.As(cause, &se) {
		cause = se.Err
	}
	client.RenderNotRunning(w, t.socket, cause, last, lastErr, now, tty)
	return agent.ExitDown
}

// printJSON prints v indented, as every --json output does.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
