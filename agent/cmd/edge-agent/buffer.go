package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/edge-agent/edge-agent/agent/client"
)

// cmdBuffer runs `edge-agent buffer ack-loss`: the technician acknowledges
// readings lost to damage, which keep status critical until then.
func cmdBuffer(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "ack-loss" {
		fmt.Fprint(stderr, "usage: edge-agent buffer ack-loss [--config FILE] [--socket PATH]\n")
		return 2
	}
	fs := newFlags("buffer ack-loss", stderr)
	config := fs.String("config", defaultConfig, "config file (for control_socket)")
	socket := fs.String("socket", "", "control socket (default: control_socket from --config, else /run/edge-agent/agent.sock)")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := client.AckLoss(ctx, resolveTarget(*socket, *config).socket)
	if err != nil {
		fmt.Fprintf(stderr, "edge-agent buffer ack-loss: %v\n", err)
		return 1
	}
	if len(r.Acknowledged) == 0 {
		fmt.Fprintln(stdout, "no recorded losses")
		return 0
	}
	for _, l := range r.Acknowledged {
		fmt.Fprintf(stdout, "acknowledged: %s\n", l)
	}
	return 0
}
