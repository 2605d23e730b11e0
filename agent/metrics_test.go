package agent

import (
	"strings"
	"testing"
)

// The link's counters reach /metrics from the same Status the CLI shows:
// bytes on the wire for a metered link's bill, reconnects.
func TestMetricsLinkCounters(t *testing.T) {
	var b strings.Builder
	writeMetrics(&b, healthyStatus(), 0)
	for _, want := range []string{
		"# TYPE edge_agent_link_sent_bytes_total counter\nedge_agent_link_sent_bytes_total 4.3212345e+07\n",
		"edge_agent_link_reconnects_total 2\n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("/metrics lacks %q:\n%s", want, b.String())
		}
	}
}
