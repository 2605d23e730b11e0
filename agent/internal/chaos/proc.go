package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/edge-agent/edge-agent/internal/jsclient"
)

// agentProc is the edge-agent binary as a real process: faults like kill -9
// and power cuts only mean something against a process the harness does not
// share memory with.
type agentProc struct {
	bin, cfgPath, logPath string
	url                   string   // local client URL
	env                   []string // added to the harness's environment

	cmd  *exec.Cmd
	done chan struct{}
	err  error // exit status, valid after done
}

func (p *agentProc) start() error {
	f, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("agent log %s: %w", p.logPath, err)
	}
	fmt.Fprintf(f, "\n=== chaos: start %s\n", time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(p.bin, "run", "--config", p.cfgPath)
	cmd.Env = append(os.Environ(), p.env...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("start %s: %w", p.bin, err)
	}
	p.cmd, p.done = cmd, make(chan struct{})
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return nil
}

func (p *agentProc) running() bool {
	if p.cmd == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// signal sends sig and, for SIGKILL, waits until the process is gone.
func (p *agentProc) signal(sig syscall.Signal) {
	if !p.running() {
		return
	}
	_ = p.cmd.Process.Signal(sig)
	if sig == syscall.SIGKILL {
		<-p.done
	}
}

func (p *agentProc) kill() { p.signal(syscall.SIGKILL) }

// stop is a graceful stop (SIGTERM); an agent that does not exit within
// timeout, or exits non-zero, is a finding.
func (p *agentProc) stop(timeout time.Duration) error {
	if !p.running() {
		return nil
	}
	p.signal(syscall.SIGTERM)
	select {
	case <-p.done:
		if p.err != nil {
			return fmt.Errorf("agent exited with %v on SIGTERM; log %s:\n%s", p.err, p.logPath, p.logTail())
		}
		return nil
	case <-time.After(timeout):
		p.kill()
		return fmt.Errorf("agent did not stop within %s of SIGTERM (killed); log %s", timeout, p.logPath)
	}
}

// waitReady polls until the local port accepts clients and JetStream
// answers for the agent's streams, the point where a local app can store.
func (p *agentProc) waitReady(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		if !p.running() {
			return fmt.Errorf("agent exited (%v) before it was ready; log %s:\n%s", p.err, p.logPath, p.logTail())
		}
		if last = probe(ctx, p.url); last == nil {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("agent not ready in %s (%v); log %s:\n%s", timeout, last, p.logPath, p.logTail())
}

// probe is one readiness check: connect, then look up both local streams.
func probe(ctx context.Context, url string) error {
	return jsclient.Do(url, func(js jetstream.JetStream) error {
		for _, s := range localStreams {
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			_, err := js.Stream(cctx, s)
			cancel()
			if err != nil {
				return fmt.Errorf("stream %s: %w", s, err)
			}
		}
		return nil
	}, nats.Timeout(time.Second), nats.MaxReconnects(0), nats.Name("chaos-probe"))
}

// logTail is the end of the agent's log, for error messages.
func (p *agentProc) logTail() string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return err.Error()
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > 15 {
		lines = lines[len(lines)-15:]
	}
	return "  " + strings.ReplaceAll(string(bytes.Join(lines, []byte("\n"))), "\n", "\n  ")
}
