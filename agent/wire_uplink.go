package agent

import (
	"context"

	"github.com/edge-agent/edge-agent/uplink"
)

// uplinkPart owns the link manager, forwarder, downlink and heartbeat.
type uplinkPart struct {
	link *uplink.Link
}

func (a *Agent) setupUplink(ctx context.Context, cfg *Config) error {
	if cfg.Uplink == nil {
		return nil
	}
	a.up = &uplinkPart{}
	link, err := uplink.NewLink(a.srv, a.srvOpts, cfg.Uplink, a.State(), a.log.With("component", "uplink"))
	if err != nil {
		return err
	}
	a.up.link = link
	a.srv.SetLoggerV2(link.Logger(natsLogger{a.log.With("component", "nats-server")}), true, false, false)
	a.addPart("uplink-link", link.Run)
	return nil
}

// LinkStatus is the leaf connection's state; nil when running standalone.
func (a *Agent) LinkStatus() *uplink.LinkStatus {
	if a.up == nil || a.up.link == nil {
		return nil
	}
	st := a.up.link.Status()
	return &st
}

// ForwarderStatus is store-and-forward progress; nil when standalone.
func (a *Agent) ForwarderStatus() *uplink.ForwarderStatus { return nil }
