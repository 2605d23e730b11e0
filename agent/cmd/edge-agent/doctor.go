package main

import (
	"context"
	"flag"
	"io"

	"github.com/edge-agent/edge-agent/agent"
)

// cmdDoctor runs the technician's checks; it works with the daemon stopped.
func cmdDoctor(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("doctor", flag.ContinueOnError)
	fs.SetOutput(stderr)
	config := fs.String("config", defaultConfig, "config file")
	asJSON := fs.Bool("json", false, "print the checks as JSON")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	checks := agent.NewDoctor().Run(context.Background(), *config)
	if *asJSON {
		printJSON(stdout, checks)
	} else {
		agent.RenderChecks(stdout, checks, isTTY(stdout))
	}
	return agent.DoctorExit(checks)
}
