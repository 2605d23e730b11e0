package agent

import (
	"context"
	"slices"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/edge-agent/edge-agent/uplink"
	"github.com/edge-agent/edge-agent/uplink/wire"
)

// heartbeatPart publishes the site's heartbeat and watches for a twin.
type heartbeatPart struct {
	hb *uplink.Heartbeater
}

// maxHeartbeatWarnings keeps a heartbeat small on a site with many failing
// sensors; the full list is one `<prefix>.<site>.agent.status` away.
const maxHeartbeatWarnings = 8

// maxHeartbeatText bounds a remote config error in the heartbeat.
const maxHeartbeatText = 240

func (a *Agent) setupHeartbeat(ctx context.Context, cfg *Config) error {
	if cfg.Uplink == nil {
		return nil
	}
	hb, err := uplink.NewHeartbeater(uplink.HeartbeatOptions{
		Conn: a.nc, Prefix: cfg.Uplink.SubjectPrefix, Site: cfg.Site,
		Server: a.srv.Name(), Instance: NewInstanceID(), Interval: cfg.Uplink.Heartbeat,
		Build: func(ctx context.Context) wire.Heartbeat {
			hb := heartbeatFromStatus(a.Status(ctx))
			if r := a.RemoteConfigReport(); r != nil {
				b := r.Brief(maxHeartbeatText)
				hb.Config = &b
			}
			return hb
		},
		LinkConn:     a.leafConn,
		Now:          a.buf.clock.Now,
		HubListening: a.hubListening,
		LinkReason: func() uplink.ReasonClass {
			if l := a.LinkStatus(); l != nil {
				return l.ReasonClass
			}
			return ""
		},
		Log: a.log.With("component", "heartbeat"),
	})
	if err != nil {
		return err
	}
	a.hb = &heartbeatPart{hb: hb}
	a.addPart("heartbeat", hb.Run)
	return nil
}

// leafConn is the id of the leaf connection to the hub, 0 while down.
func (a *Agent) leafConn() uint64 {
	if a.srv.NumLeafNodes() == 0 {
		return 0
	}
	lz, err := a.srv.Leafz(nil)
	if err != nil || len(lz.Leafs) == 0 {
		return 0
	}
	return lz.Leafs[0].ID
}

// hubListening reports whether interest in subject has arrived over a leaf
// connection, i.e. a publish now would cross to the hub.
func (a *Agent) hubListening(subject string) bool {
	lz, err := a.srv.Leafz(&server.LeafzOptions{Subscriptions: true})
	if err != nil {
		return false
	}
	for _, l := range lz.Leafs {
		for _, s := range l.Subs {
			if server.SubjectMatchesFilter(subject, s) {
				return true
			}
		}
	}
	return false
}

// DuplicateSite reports another device heard publishing heartbeats as this
// site (see uplink.Heartbeater.Twin); false when standalone.
func (a *Agent) DuplicateSite() (uplink.Twin, bool) {
	if a.hb == nil {
		return uplink.Twin{}, false
	}
	return a.hb.hb.Twin()
}

// Heartbeat is the heartbeat as it would be published now.
func (a *Agent) Heartbeat(ctx context.Context) (wire.Heartbeat, bool) {
	if a.hb == nil {
		return wire.Heartbeat{}, false
	}
	return a.hb.hb.Beat(ctx), true
}

// heartbeatFromStatus condenses Status into the heartbeat's fields, so the
// fleet view and `edge-agent status` never disagree about a site.
func heartbeatFromStatus(s Status) wire.Heartbeat {
	hb := wire.Heartbeat{
		Version: s.Version, State: s.State, Clock: string(s.Clock.State),
		DiskUsed: s.Store.Bytes, DiskFree: s.Store.DiskFree,
		// The heartbeat is only published while the leaf is up; the link
		// manager, when running, says more (reason class, reconnects).
		Link: uplink.StateConnected,
	}
	if !s.Started.IsZero() {
		hb.Uptime = int64(s.Time.Sub(s.Started) / time.Second)
	}
	if s.Uplink != nil && s.Uplink.Link != nil {
		l := s.Uplink.Link
		hb.Link, hb.Reason, hb.Reconnects = l.State, l.ReasonClass, l.Reconnects
		if l.State == uplink.StateConnected {
			hb.UpSince, hb.LastOutage = l.Since.Unix(), int64(l.LastOutage/time.Second)
		}
	}
	for _, l := range s.Backlog {
		if hb.Backlog == nil {
			hb.Backlog = map[string]uint64{}
		}
		hb.Backlog[l.Stream] = l.Messages
		hb.Evicted += l.Evicted
	}
	for _, l := range s.Store.Losses {
		hb.Lost += l.Count
	}
	for _, se := range s.Sensors {
		if se.OK {
			hb.SensorsOK++
		} else {
			hb.Failing = append(hb.Failing, se.Name)
		}
	}
	for _, w := range s.Warnings {
		if len(hb.Warnings) < maxHeartbeatWarnings && !slices.Contains(hb.Warnings, w.Component) {
			hb.Warnings = append(hb.Warnings, w.Component)
		}
	}
	return hb
}
