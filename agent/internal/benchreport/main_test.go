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
