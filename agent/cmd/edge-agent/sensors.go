package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/edge-agent/edge-agent/sensors"
)

const sensorsUsage = "usage: edge-agent sensors list | sensors sample DRIVER | sensors scan [--modbus URL [--ids 1-247] [--timeout 200ms] [--max-time 60s]]\n"

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
	case len(args) >= 1 && args[0] == "scan":
		return cmdScan(args[1:], stdout, stderr)
	}
	fmt.Fprint(stderr, sensorsUsage)
	return 2
}

// cmdScan looks at the local buses, or with --modbus probes one Modbus
// bus for answering unit ids, bounded by --ids and --max-time.
func cmdScan(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("sensors scan", stderr)
	url := fs.String("modbus", "", "probe this Modbus bus (tcp://host:502, rtu:///dev/ttyUSB0?baud=9600&parity=N&stop=1, rtu-over-tcp://host:port) instead of the local buses")
	idList := fs.String("ids", "1-247", "unit ids to probe, e.g. 1-10,17")
	timeout := fs.Duration("timeout", 200*time.Millisecond, "how long each unit id has to answer")
	maxTime := fs.Duration("max-time", time.Minute, "stop probing after this long")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 {
		fmt.Fprint(stderr, sensorsUsage)
		return 2
	}
	if *url == "" {
		// Nothing found is a valid answer (exit 0): the report says how to
		// enable each bus.
		sensors.Scan().WriteText(stdout)
		return 0
	}
	ids, err := sensors.ParseUnitIDs(*idList)
	if err != nil || *timeout <= 0 || *maxTime <= 0 {
		if err == nil {
			err = fmt.Errorf("--timeout and --max-time must be positive")
		}
		fmt.Fprintf(stderr, "edge-agent: %v\n", err)
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), *maxTime)
	defer cancel()
	r, err := sensors.ScanModbus(ctx, *url, ids, *timeout)
	if err != nil {
		fmt.Fprintf(stderr, "edge-agent: modbus scan: %v\n", err)
		return 1
	}
	r.WriteText(stdout)
	return 0
}
