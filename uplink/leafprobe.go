package uplink

import (
	"fmt"

	"github.com/nats-io/nats-server/v2/server"
)

// HubInterest reports whether the hub has told leaf it takes subject: a
// hub forwards a subscription (a stream's subjects among them) to a leaf
// only where the hub-side leaf user's publish permissions overlap it.
func HubInterest(leaf *server.Server, subject string) bool {
	for _, sub := range HubSubs(leaf) {
		if server.SubjectMatchesFilter(subject, sub) {
			return true
		}
	}
	return false
}

// HubSubs is the subscriptions the hub has sent leaf.
func HubSubs(leaf *server.Server) []string {
	if leaf == nil {
		return nil
	}
	lz, err := leaf.Leafz(&server.LeafzOptions{Subscriptions: true})
	if err != nil {
		return nil
	}
	var out []string
	for _, l := range lz.Leafs {
		out = append(out, l.Subs...)
	}
	return out
}

// NoHubStreamReason is the reason given when no hub stream captures the
// site's telemetry (wild: its prefix.site.telemetry.> subject).
func NoHubStreamReason(wild string) string {
	return fmt.Sprintf("no hub stream captures %s: create it with `edge-agent hub init --server URL`", wild)
}

// NoPublishFix is the fix for a hub-side leaf user that may not publish
// the site's subjects.
func NoPublishFix(prefix, site string) string {
	return fmt.Sprintf("allow publish to %s.%s.> for this site's leaf user in the hub config: `edge-agent hub leaf-user --site %s --prefix %s` prints its entry (docs/UPLINK.md: Hub side)", prefix, site, site, prefix)
}
