package main

import (
	"strings"
	"testing"
)

func TestParseAndFormat(t *testing.T) {
	out := `goos: linux
pkg: github.com/edge-agent/edge-agent/buffer
BenchmarkPublish/sync=always-2   	    3000	    281000 ns/op	      3559 msgs/s	         0.97 ratio_vs_nats_server	     512 B/op	       9 allocs/op
BenchmarkNoise
PASS
pkg: github.com/edge-agent/edge-agent/uplink
BenchmarkDrain-2 1 2000000000 ns/op 51000 msgs/s 1.8 x_vs_sourcing 0.93 sourcing_x_vs_hub_ceiling
`
	res := parse(strings.NewReader(out))
	if len(res) != 2 {
		t.Fatalf("parsed %d results, want 2: %+v", len(res), res)
	}
	if res[0].name != "Publish/sync=always" || res[0].pkg != "github.com/edge-agent/edge-agent/buffer" || len(res[0].metrics) != 5 {
		t.Errorf("first result = %+v", res[0])
	}
	var md strings.Builder
	writeTables(&md, res)
	for _, want := range []string{"## buffer", "| Publish/sync=always | 3000 |", "**0.97** ratio_vs_nats_server", "## uplink", "**1.8** x_vs_sourcing", "**0.93** sourcing_x_vs_hub_ceiling"} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, md.String())
		}
	}
}

// The goals table reads each figure from its benchmark, divides where a
// goal compares two rows, says whether the run met the bound, and puts
// the agent against the measured bound of a row that has one.
func TestGoals(t *testing.T) {
	out := `pkg: github.com/edge-agent/edge-agent/agent
BenchmarkPeerRSS-2 1 1 ns/op 21.5 MiB_idle_agent 1.82 idle_rss_ratio_vs_nats_server 1.45 loaded_rss_ratio_vs_nats_server 1.40 same_work_idle_rss_ratio_vs_nats_server 1.60 same_work_loaded_rss_ratio_vs_nats_server
pkg: github.com/edge-agent/edge-agent/buffer
BenchmarkDiskWrites/sync=always/rate=10/s-2 1 1 ns/op 37.5 disk_B/payload_B 37.0 disk_B/payload_B_nats_server
BenchmarkDiskWrites/sync=1s/rate=10/s-2 1 1 ns/op 7.5 disk_B/payload_B 7.4 disk_B/payload_B_nats_server
pkg: github.com/edge-agent/edge-agent/uplink
BenchmarkHubRestart/hold=5s-2 1 7.0 backoff_p99_s 1.96 fwd_p99_s 40.5 src_p99_s
`
	var md strings.Builder
	writeGoals(&md, parse(strings.NewReader(out)))
	for _, want := range []string{
		"| idle RSS | 1.82× | ≤ 1.3× | `nats-server -js` | no | 1.40×, misses it too (",
		"; the agent is 1.30× of it |",
		"| RSS after a load | 1.45× | ≤ 1.5× | `nats-server -js` | yes | 1.60×, misses it (",
		"| disk bytes per payload byte, 10 readings/s, sync always | 5.00× | ≤ 3× | sync 1s | no | 5.00×, misses it too (nats-server of the embedded version",
		"| the same on ext4 with 4 KiB blocks | not run | ≤ 3× | sync 1s |  | not run |",
		"| core pub/sub through the leaf | not run | ≥ 0.95× | standalone nats-server |  | ",
		"| hub down 5 s: hub back → first reading at the hub, p99 | 1.96 s | ≤ 2.5 s | today's backoff, stock sourcing",
	} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("goals lack %q:\n%s", want, md.String())
		}
	}
}

// TestKeptNotes: the hand-written analysis after the mark survives a
// regenerated report; a report without the mark adds nothing.
func TestKeptNotes(t *testing.T) {
	prev := "# Benchmarks\n\n| old | table |\n\n" + notesMark + "\n\n## Notes\n\nwhere the time goes\n"
	if got := keptNotes([]byte(prev)); got != "\n"+notesMark+"\n\n## Notes\n\nwhere the time goes\n" {
		t.Fatalf("kept %q", got)
	}
	if got := keptNotes([]byte("# Benchmarks\n| old | table |\n")); got != "" {
		t.Fatalf("kept %q from a report without notes", got)
	}
}
