package agent

import "context"

// uplinkPart owns the link manager, forwarder, downlink and heartbeat.
type uplinkPart struct{}

func (a *Agent) setupUplink(ctx context.Context, cfg *Config) error {
	if cfg.Uplink == nil {
		return nil
	}
	a.up = &uplinkPart{}
	return nil
}
