package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/edge-agent/edge-agent/agent"
	"github.com/edge-agent/edge-agent/buffer"
)

// `edge-agent buffer ack-loss` clears the losses through the control
// socket, says what it cleared, and status is no longer down for them.
func TestBufferAckLossCommand(t *testing.T) {
	path := cliConfig(t, "")
	a, stop := startCLIAgent(t, path)
	cfg := a.Config()
	if _, err := a.State().AddLoss(buffer.Loss{Stream: buffer.StreamTelemetry, From: 1, To: 5, Cause: "test"}); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if code := run([]string{"status", "--config", path}, &out, &errb); code != agent.ExitDown || !strings.Contains(out.String(), "LOST 5 acknowledged readings of TELEMETRY, seq 1..5") {
		t.Fatalf("status exit %d:\n%s", code, out.String())
	}
	out.Reset()
	if code := run([]string{"buffer", "ack-loss", "--config", path}, &out, &errb); code != 0 || !strings.Contains(out.String(), "acknowledged: TELEMETRY: 5 acknowledged messages lost, seq 1..5") {
		t.Fatalf("ack-loss exit %d:\n%s%s", code, out.String(), errb.String())
	}
	out.Reset()
	if code := run([]string{"buffer", "ack-loss", "--socket", cfg.ControlSocket}, &out, &errb); code != 0 || !strings.Contains(out.String(), "no recorded losses") {
		t.Fatalf("second ack-loss exit %d:\n%s%s", code, out.String(), errb.String())
	}
	out.Reset()
	run([]string{"status", "--config", path}, &out, &errb)
	if strings.Contains(out.String(), "LOST") {
		t.Fatalf("loss still shown after ack-loss:\n%s", out.String())
	}
	if code := run([]string{"buffer"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "usage: edge-agent buffer ack-loss") {
		t.Fatalf("bare buffer: exit %d, %s", code, errb.String())
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	errb.Reset()
	if code := run([]string{"buffer", "ack-loss", "--config", path}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "not running") {
		t.Fatalf("stopped daemon: exit %d, %s", code, errb.String())
	}
}
