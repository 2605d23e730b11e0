package agent

import (
	"context"

	"github.com/edge-agent/edge-agent/uplink"
)

// uplinkPart owns the link manager, forwarder, downlink and heartbeat.
type uplinkPart struct{}

func (a *Agent) setupUplink(ctx context.Context, cfg *Config) error {
	if cfg.Uplink == nil {
		return nil
	}
	a.up = &uplinkPart{}
	return nil
}

// LinkStatus is the leaf connection's state; nil when running standalone.
func (a *Agent) LinkStatus() *uplink.LinkStatus { return nil }

// ForwarderStatus is store-and-forward progress; nil when standalone.
func (a *Agent) ForwarderStatus() *uplink.ForwarderStatus { return nil }
