package main

import (
	"fmt"
	"strconv"
	"strings"
)

// figure is one number of the report: a metric of one benchmark, or the
// quotient of two when per is set.
type figure struct {
	bench string // benchmark name as reported, without "Benchmark"
	unit  string
	per   [2]string // when set: divided by this benchmark's metric (bench, unit)
}

// value finds the figure in this run's results.
func (f figure) value(results []result) (float64, bool) {
	v, ok := metric(results, f.bench, f.unit)
	if ok && f.per[0] != "" {
		d, dok := metric(results, f.per[0], f.per[1])
		v, ok = v/d, dok && d != 0
	}
	return v, ok
}

// goal is one row of the issues' goals table: a figure of the report
// against the bound it should meet. A figure is a ratio, or seconds when
// its unit ends in _s. Goals live here, in the report, and never in a
// timed test assertion.
//
// A row may also name a measured bound: the same figure for a peer that
// does the same work the contract asks of the agent (the same JetStream
// streams, the same exactly-once protocol, the same fsync per reading),
// measured in the same run. When that peer misses the goal as well, the
// goal cannot be met by any implementation of the contract on this
// machine, and the row says how close the agent comes to the peer.
type goal struct {
	label     string
	fig       figure
	atMost    bool // the figure must be ≤ bound, else ≥
	bound     float64
	reference string // what the figure compares with
	peer      figure // the measured bound, when there is one
	peerLabel string // what the peer is
}

// A figure compared with a reference in the same run.
func ratio(bench, unit string) figure { return figure{bench: bench, unit: unit} }

var goals = []goal{
	{"idle RSS", ratio("PeerRSS", "idle_rss_ratio_vs_nats_server"), true, 1.3, "`nats-server -js`",
		ratio("PeerRSS", "same_work_idle_rss_ratio_vs_nats_server"), "the embedded nats-server version with the agent's streams and one reading a second"},
	{"RSS after a load", ratio("PeerRSS", "loaded_rss_ratio_vs_nats_server"), true, 1.5, "`nats-server -js`",
		ratio("PeerRSS", "same_work_loaded_rss_ratio_vs_nats_server"), "the same peer after the same load"},
	{"time to READY, empty store", ratio("PeerReady/empty", "ratio_vs_nats_server"), true, 1.5, "`nats-server -js`",
		ratio("PeerReady/empty", "same_work_ratio_vs_nats_server"), "the embedded nats-server version creating the agent's buffer streams with the agent's default sync (always)"},
	{"time to READY, pre-filled store", ratio("PeerReady/prefilled", "ratio_vs_nats_server"), true, 1.2, "`nats-server -js`",
		ratio("PeerReady/prefilled", "salvage_same_version_ratio_vs_nats_server"), "the damage pass over the unforwarded blocks, then the embedded nats-server version starting on the agent's store"},
	{"core pub/sub through the leaf", ratio("PeerPubSub", "ratio_vs_nats_server"), false, 0.95, "standalone nats-server",
		ratio("PeerPubSub", "same_config_ratio_vs_nats_server"), "the embedded nats-server version with the agent's server configuration: JetStream domain, uplink, local permissions"},
	{"hub CPU per drained reading", ratio("Drain/loopback", "hub_cpu_x_vs_sourcing"), true, 1.0, "stock sourcing",
		ratio("Drain/loopback", "exactly_once_ceiling_hub_cpu_x_vs_sourcing"), exactlyOncePeer},
	// From SiteCPU, whose own sourcing drain divides both the forwarder's
	// figure and its bound's (Drain/loopback reports the same figure
	// against another sourcing drain).
	{"site CPU per drained reading", ratio("SiteCPU", "site_cpu_x_vs_sourcing"), true, 1.5, "stock sourcing",
		ratio("SiteCPU", "read_plus_publish_x_vs_sourcing"), "reading the backlog as the forwarder does plus publishing it from a bare client, each alone"},
	{"drain rate, backlog, loopback", ratio("Drain/loopback", "x_vs_sourcing"), false, 1.0, "stock sourcing",
		ratio("Drain/loopback", "exactly_once_ceiling_x_vs_sourcing"), exactlyOncePeer},
	diskGoal("disk bytes per payload byte, 10 readings/s, sync always", ""),
	diskGoal("the same on ext4 with 4 KiB blocks", "/block=4KiB"),
	{"hub down 5 s: hub back → first reading at the hub, p99", ratio("HubRestart/hold=5s", "fwd_p99_s"), true, 2.5, hubRestartVs, figure{}, ""},
	{"hub down 20 s: hub back → first reading at the hub, p99", ratio("HubRestart/hold=20s", "fwd_p99_s"), true, 2.5, hubRestartVs, figure{}, ""},
}

// diskGoal compares the disk bytes of sync always with those of sync 1s,
// on the benchmark's disk whose block size suffix names; the bound is a
// stock nats-server storing the same readings with the same sync policy.
func diskGoal(label, suffix string) goal {
	always, second := "DiskWrites/sync=always/rate=10/s"+suffix, "DiskWrites/sync=1s/rate=10/s"+suffix
	return goal{label,
		figure{always, "disk_B/payload_B", [2]string{second, "disk_B/payload_B"}}, true, 3.0, "sync 1s",
		figure{always, "disk_B/payload_B_nats_server", [2]string{second, "disk_B/payload_B_nats_server"}},
		"nats-server of the embedded version, the agent's stream, an fsync per reading against one a second"}
}

// exactlyOncePeer: the better of two bare clients on the site leaf that
// publish the same readings into the same hub stream under the forwarder's
// contract (a Nats-Msg-Id each, nothing counted before the hub stored it),
// one in fast batches, one with an ack per message, reading nothing.
const exactlyOncePeer = "a bare client publishing the same readings under the exactly-once contract, the better of fast batch and an ack per message"

// hubRestartVs: the hub restart goal is absolute; its benchmark row holds
// the same figure for the backoff alone and for stock sourcing.
const hubRestartVs = "today's backoff, stock sourcing: backoff_p99_s, src_p99_s in HubRestart's row"

// meets says whether v meets the goal.
func (g goal) meets(v float64) bool {
	if g.atMost {
		return v <= g.bound
	}
	return v >= g.bound
}

// writeGoals adds the goals table: each figure as measured in this run,
// the bound, whether the run met it, and the measured bound of the rows
// that have one.
func writeGoals(md *strings.Builder, results []result) {
	md.WriteString("\n## Goals\n\n| figure | this run | goal | vs | met | measured bound: a peer doing the same work |\n|---|---:|---:|---|---|---|\n")
	for _, g := range goals {
		suffix := "×"
		if strings.HasSuffix(g.fig.unit, "_s") {
			suffix = " s"
		}
		op := "≥"
		if g.atMost {
			op = "≤"
		}
		fig, met := "not run", ""
		v, ok := g.fig.value(results)
		if ok {
			fig = strconv.FormatFloat(v, 'f', 2, 64) + suffix
			met = "no"
			if g.meets(v) {
				met = "yes"
			}
		}
		fmt.Fprintf(md, "| %s | %s | %s %.2g%s | %s | %s | %s |\n", g.label, fig, op, g.bound, suffix, g.reference, met, g.peerCell(results, v, ok))
	}
}

// peerCell is the measured-bound column: the peer's figure, whether the
// peer itself meets the goal, and the agent against the peer.
func (g goal) peerCell(results []result, v float64, ok bool) string {
	if g.peer.bench == "" {
		return ""
	}
	p, pok := g.peer.value(results)
	if !pok {
		return "not run"
	}
	verdict := "meets the goal"
	if !g.meets(p) {
		verdict = "misses it"
		if ok && !g.meets(v) {
			verdict += " too"
		}
	}
	cell := fmt.Sprintf("%.2f×, %s (%s)", p, verdict, g.peerLabel)
	if ok && p != 0 {
		cell += fmt.Sprintf("; the agent is %.2f× of it", v/p)
	}
	return cell
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
