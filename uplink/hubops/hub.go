package hubops

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
)

// HubStreamConfig is the hub-side stream that captures every site's
// forwarded readings. The duplicate window must outlast the longest resend
// after a crash or reconnect, so resends are dropped, not stored twice.
// Fast batch publishing is allowed: forwarders then get a hub ack every N
// readings instead of each one (nats-server 2.14+; older hubs ignore the
// setting and forwarders fall back to per-message acks).
func HubStreamConfig(name, prefix string, dupWindow time.Duration) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:              name,
		Description:       "edge-agent fleet ingest: " + prefix + ".<site>.telemetry|alerts.>",
		Subjects:          []string{prefix + ".*.telemetry.>", prefix + ".*.alerts.>"},
		Storage:           jetstream.FileStorage,
		Retention:         jetstream.LimitsPolicy,
		Duplicates:        dupWindow,
		AllowBatchPublish: true,
	}
}

// EnsureHubStream creates the hub stream or verifies an existing one
// captures the fleet subjects. The one change it makes to a stream it did
// not create is to allow fast batches when want does and the hub supports
// them: it only lets forwarders ask for fewer acks.
func EnsureHubStream(ctx context.Context, js jetstream.JetStream, want jetstream.StreamConfig) (jetstream.Stream, error) {
	s, err := js.Stream(ctx, want.Name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return js.CreateStream(ctx, want)
	}
	if err != nil {
		return nil, fmt.Errorf("look up hub stream %s: %w", want.Name, err)
	}
	if want.AllowBatchPublish && !s.CachedInfo().Config.AllowBatchPublish && HubBatches(js) {
		cfg := s.CachedInfo().Config
		cfg.AllowBatchPublish = true
		if s, err = js.UpdateStream(ctx, cfg); err != nil {
			return nil, fmt.Errorf("allow fast batches on hub stream %s: %w", want.Name, err)
		}
	}
	have := s.CachedInfo().Config
	for _, w := range want.Subjects {
		if !slices.ContainsFunc(have.Subjects, func(h string) bool { return server.SubjectMatchesFilter(w, h) }) {
			return s, fmt.Errorf("hub stream %s exists but does not capture %s (its subjects: %v): forwarded readings would get no ack; add the subject with `nats stream edit %s --subjects ...` or choose another --stream name", want.Name, w, have.Subjects, want.Name)
		}
	}
	if have.Duplicates < want.Duplicates {
		return s, fmt.Errorf("hub stream %s has a duplicate window of %s, shorter than %s: resends after an outage could be stored twice; raise it with `nats stream edit %s --dupe-window %s`", want.Name, have.Duplicates, want.Duplicates, want.Name, want.Duplicates)
	}
	return s, nil
}

// SitePermissions is what the hub's leaf user for one site needs, seen from
// the leaf as nats-server applies it: publish is what the site may send up
// (its own forwarded readings, heartbeat, replies, hub-pulls deliveries
// under <prefix>.<site>.deliver and replies to the hub's sourcing setup on
// $JSC.R), subscribe is what the hub may send down
// (acks and replies, downlink requests and commands, the site's JetStream
// API, hub-pulls flow control). A site can never write another site's
// subjects.
//
// Remote config (agent/fleetconfig) adds read-only watches of the site's
// own keys in the hub's EDGE_CONFIG bucket (any JetStream domain: the leaf
// sends $JS.<hub domain>.API) and the flow-control replies of those
// watches; the site can neither write the bucket nor watch another site's
// key.
func SitePermissions(prefix, site string) *server.Permissions {
	own := prefix + "." + site + ".>"
	return &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: append([]string{own, "_INBOX.>", "$JSC.R.>"}, configWatch(site)...)},
		Subscribe: &server.SubjectPermission{Allow: []string{own, "_INBOX.>", "$JS." + site + ".API.>", "$JS.FC.>"}},
	}
}

// HubLeafUser renders one site's entry for the users list of the hub's
// account in nats-server config syntax (`edge-agent hub leaf-user`).
func HubLeafUser(prefix, site, password string) string {
	p := SitePermissions(prefix, site)
	q := func(ss []string) string {
		out := make([]string, len(ss))
		for i, s := range ss {
			out[i] = fmt.Sprintf("%q", s)
		}
		return strings.Join(out, ", ")
	}
	return fmt.Sprintf(`{user: %q, password: %q, permissions: {
  publish: {allow: [%s]}
  subscribe: {allow: [%s]}
}}`, site, password, q(p.Publish.Allow), q(p.Subscribe.Allow))
}

// HubBatches reports whether the hub js talks to runs a nats-server that
// supports fast batch publishing (2.14+).
func HubBatches(js jetstream.JetStream) bool {
	var major, minor int
	if _, err := fmt.Sscanf(js.Conn().ConnectedServerVersion(), "%d.%d", &major, &minor); err != nil {
		return false
	}
	return major > 2 || major == 2 && minor >= 14
}

// configWatch is what a site sends to watch its keys in the hub's config
// bucket: the bucket's stream info, one ordered consumer per key (the
// filter is part of the create subject) and the consumers' flow control.
func configWatch(site string) []string {
	const create = "$JS.*.API.CONSUMER.CREATE.KV_EDGE_CONFIG.*.$KV.EDGE_CONFIG."
	return []string{
		"$JS.*.API.STREAM.INFO.KV_EDGE_CONFIG",
		create + "fleet", create + "group.*", create + "rollout.*." + site, create + "site." + site,
		"$JS.FC.KV_EDGE_CONFIG.>",
	}
}
