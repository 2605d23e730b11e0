package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/edge-agent/edge-agent/agent"
	"github.com/edge-agent/edge-agent/agent/client"
)

// cmdDoctor runs the technician's checks; it works with the daemon stopped.
func cmdDoctor(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("doctor", stderr)
	config := fs.String("config", "", "config file (default: the running agent's, asked on --socket; else "+defaultConfig+")")
	socket := fs.String("socket", agent.DefaultConfig().ControlSocket, "control socket of the running agent")
	asJSON := fs.Bool("json", false, "print the checks as JSON")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	d := agent.NewDoctor()
	path := *config
	if path == "" {
		path, d.ConfigSource = findConfig(*socket)
	}
	checks := d.Run(context.Background(), path)
	if *asJSON {
		printJSON(stdout, checks)
	} else {
		client.RenderChecks(stdout, checks, isTTY(stdout))
	}
	return agent.DoctorExit(checks)
}

// findConfig is the running agent's config when one answers on socket,
// else the default path; the second value says which, for the report.
func findConfig(socket string) (path, source string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	p, err := client.FetchConfigPath(ctx, socket)
	if err == nil && p != "" {
		return p, "the running agent's config, asked on " + socket
	}
	return defaultConfig, fmt.Sprintf("the default path: no agent answered on %s", socket)
}
