package main

import (
	"fmt"
	"io"

	"github.com/edge-agent/edge-agent/sensors"
)

func cmdSensors(args []string, stdout, stderr io.Writer) int {
	switch {
	case len(args) == 1 && args[0] == "list":
		for _, d := range sensors.Drivers() {
			fmt.Fprintln(stdout, d)
		}
		return 0
	case len(args) == 2 && args[0] == "sample":
		r, ok := sensors.Lookup(args[1])
		if !ok {
			fmt.Fprintf(stderr, "edge-agent: unknown driver %q; `edge-agent sensors list` shows the known ones\n", args[1])
			return 2
		}
		fmt.Fprint(stdout, r.Sample)
		return 0
	case len(args) == 1 && args[0] == "scan":
		// Nothing found is a valid answer (exit 0): the report says how to
		// enable each bus.
		sensors.Scan().WriteText(stdout)
		return 0
	}
	fmt.Fprint(stderr, "usage: edge-agent sensors list | sensors sample DRIVER | sensors scan\n")
	return 2
}
