package hubops

import (
	"context"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/edge-agent/edge-agent/agent/fleetconfig"
)

// FleetReports reads every site's last config report from the hub's
// heartbeat table: a rollout's fleetconfig.Rollout.Reports. A site whose
// heartbeat carries no report (remote config off) is left out.
func FleetReports(js jetstream.JetStream, prefix string) func(ctx context.Context) (map[string]fleetconfig.Report, error) {
	return func(ctx context.Context) (map[string]fleetconfig.Report, error) {
		sites, err := ReadFleet(ctx, js, prefix)
		if err != nil {
			return nil, err
		}
		out := map[string]fleetconfig.Report{}
		for _, s := range sites {
			if s.Heartbeat.Config != nil {
				out[s.Site] = *s.Heartbeat.Config
			}
		}
		return out, nil
	}
}
