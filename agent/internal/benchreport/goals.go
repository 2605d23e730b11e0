package main

import (
	"fmt"
	"strconv"
	"strings"
)

// goal is one row of the issues' goals table: a figure of the report (a
// metric of one benchmark, or the quotient of two) against the bound it
// should meet. A figure is a ratio, or seconds when its unit ends in _s.
// Goals live here, in the report, and never in a timed test assertion.
type goal struct {
	label     string
	bench     string // benchmark name as reported, without "Benchmark"
	unit      string
	per       [2]string // when set: divided by this benchmark's metric (bench, unit)
	atMost    bool      // the figure must be ≤ bound, else ≥
	bound     float64
	reference string // what the figure compares with
}

var goals = []goal{
	{"idle RSS", "PeerRSS", "idle_rss_ratio_vs_nats_server", [2]string{}, true, 1.3, "`nats-server -js`"},
	{"RSS after a load", "PeerRSS", "loaded_rss_ratio_vs_nats_server", [2]string{}, true, 1.5, "`nats-server -js`"},
	{"time to READY, empty store", "PeerReady/empty", "ratio_vs_nats_server", [2]string{}, true, 1.5, "`nats-server -js`"},
	{"time to READY, pre-filled store", "PeerReady/prefilled", "ratio_vs_nats_server", [2]string{}, true, 1.2, "`nats-server -js`"},
	{"core pub/sub through the leaf", "PeerPubSub", "ratio_vs_nats_server", [2]string{}, false, 0.95, "standalone nats-server"},
	{"hub CPU per drained reading", "Drain/loopback", "hub_cpu_x_vs_sourcing", [2]string{}, true, 1.0, "stock sourcing"},
	{"site CPU per drained reading", "Drain/loopback", "site_cpu_x_vs_sourcing", [2]string{}, true, 1.5, "stock sourcing"},
	{"drain rate, backlog, loopback", "Drain/loopback", "x_vs_sourcing", [2]string{}, false, 1.0, "stock sourcing"},
	{"disk bytes per payload byte, 10 readings/s, sync always", "DiskWrites/sync=always/rate=10/s", "disk_B/payload_B", [2]string{"DiskWrites/sync=1s/rate=10/s", "disk_B/payload_B"}, true, 3.0, "sync 1s"},
	{"hub down 5 s: hub back → first reading at the hub, p99", "HubRestart/hold=5s", "fwd_p99_s", [2]string{}, true, 2.5, hubRestartVs},
	{"hub down 20 s: hub back → first reading at the hub, p99", "HubRestart/hold=20s", "fwd_p99_s", [2]string{}, true, 2.5, hubRestartVs},
}

// hubRestartVs: the hub restart goal is absolute; its benchmark row holds
// the same figure for the backoff alone and for stock sourcing.
const hubRestartVs = "today's backoff, stock sourcing: backoff_p99_s, src_p99_s in HubRestart's row"

// writeGoals adds the goals table: each figure as measured in this run,
// the bound, and whether the run met it.
func writeGoals(md *strings.Builder, results []result) {
	md.WriteString("\n## Goals\n\n| figure | this run | goal | vs | met |\n|---|---:|---:|---|---|\n")
	for _, g := range goals {
		suffix := "×"
		if strings.HasSuffix(g.unit, "_s") {
			suffix = " s"
		}
		v, ok := metric(results, g.bench, g.unit)
		if ok && g.per[0] != "" {
			d, dok := metric(results, g.per[0], g.per[1])
			v, ok = v/d, dok && d != 0
		}
		op := "≥"
		if g.atMost {
			op = "≤"
		}
		fig, met := "not run", ""
		if ok {
			fig = strconv.FormatFloat(v, 'f', 2, 64) + suffix
			met = "no"
			if g.atMost && v <= g.bound || !g.atMost && v >= g.bound {
				met = "yes"
			}
		}
		fmt.Fprintf(md, "| %s | %s | %s %.2g%s | %s | %s |\n", g.label, fig, op, g.bound, suffix, g.reference, met)
	}
}

// metric finds a benchmark's figure in unit.
func metric(results []result, bench, unit string) (float64, bool) {
	for _, r := range results {
		if r.name != bench {
			continue
		}
		for _, m := range r.metrics {
			if m[1] == unit {
				v, err := strconv.ParseFloat(m[0], 64)
				return v, err == nil
			}
		}
	}
	return 0, false
}
