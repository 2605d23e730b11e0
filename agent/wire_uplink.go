package agent

import (
	"context"

	"github.com/edge-agent/edge-agent/uplink"
)

// uplinkPart owns the link manager, forwarder, downlink and heartbeat.
type uplinkPart struct {
	link *uplink.Link
	fwd  *uplink.Forwarder
}

func (a *Agent) setupUplink(ctx context.Context, cfg *Config) error {
	if cfg.Uplink == nil {
		return nil
	}
	a.up = &uplinkPart{}
	link := uplink.NewLink(a.srv, a.gate, cfg.Uplink, uplink.NewHistory(a.State()), a.log.With("component", "uplink"))
	a.up.link = link
	a.srv.SetLoggerV2(link.Logger(natsLogger{a.log.With("component", "nats-server")}), true, false, false)
	a.addPart("uplink-link", link.Run)

	fwd, err := uplink.NewForwarder(cfg.Uplink, cfg.Site, a.nc, a.State(), a.log.With("component", "forwarder"),
		uplink.WithLeafServer(a.srv), uplink.WithLink(link),
		// After an outage the link's first retry is uniform in [0, min]:
		// the drain ramp spreads each site's backlog over as much again.
		uplink.WithStartJitter(cfg.Uplink.Reconnect.Min))
	if err != nil {
		return err
	}
	a.up.fwd = fwd
	// The forwarder and replays (below) read the cursors and ids the
	// start's check may still change.
	a.addPart("uplink-forwarder", a.afterCheck(fwd.Run))
	dl, err := uplink.NewDownlink(fwd, func(ctx context.Context) any { return a.Status(ctx) }, a.log.With("component", "downlink"))
	if err != nil {
		return err
	}
	dl.HoldReplays(a.checked)
	a.addPart("uplink-downlink", dl.Run)
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
func (a *Agent) ForwarderStatus() *uplink.ForwarderStatus {
	if a.up == nil || a.up.fwd == nil {
		return nil
	}
	st := a.up.fwd.Status()
	return &st
}
