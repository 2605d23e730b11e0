package uplink

import (
	"slices"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/edge-agent/edge-agent/buffer"
)

// LocalInboxPrefix is the inbox prefix of the agent's own connection. Its
// inboxes carry the buffer to the forwarder (local JetStream deliveries)
// and the acks of the agent's local writes, so they never cross the leaf,
// whatever a hub client subscribes to; the hub's answers to the agent's
// own requests still come in on them. It stays under _INBOX. because the
// hub-side leaf user's permissions let the hub answer there.
const LocalInboxPrefix = "_INBOX.local"

// agentSubjects are the subjects the agent stores or owns: its streams'
// subjects and its own namespace (cursor backups on edge-agent.cursor.*).
func agentSubjects() []string {
	var out []string
	for _, sc := range buffer.StreamConfigs(buffer.DefaultConfig()) {
		out = append(out, sc.Subjects...)
	}
	return append(out, "edge-agent.>")
}

// remoteAdminAPI are the site JetStream API calls under $JS.<site>.API. a
// hub client may not make unless uplink.allow_remote_admin: everything
// nats-server's JetStream API offers except reads (INFO, stream and
// consumer info, names and lists, STREAM.MSG.GET, DIRECT.GET) and the push
// consumers that hub-side sourcing creates (CONSUMER.CREATE). Remote
// options only have deny lists, so this is the allow list's exact
// complement; TestRemoteAdminDeniesEveryWriteAPI classifies every API
// subject of the nats-server in go.mod and fails on one it does not know.
var remoteAdminAPI = []string{
	"STREAM.CREATE.>", "STREAM.UPDATE.>", "STREAM.DELETE.>", "STREAM.PURGE.>",
	"STREAM.MSG.DELETE.>", "STREAM.SNAPSHOT.>", "STREAM.RESTORE.>",
	"STREAM.PEER.>", "STREAM.LEADER.>", "STREAM.CANCEL_MOVE.>",
	"CONSUMER.DURABLE.>", "CONSUMER.DELETE.>", "CONSUMER.PAUSE.>", "CONSUMER.RESET.>",
	"CONSUMER.UNPIN.>", "CONSUMER.MSG.NEXT.>", "CONSUMER.LEADER.>", "CONSUMER.PEER.>",
	"META.>", "SERVER.>", "ACCOUNT.>",
}

// RemoteAdminDenies are remoteAdminAPI in the site's JetStream domain.
// Requests from the hub are imports for the leaf; denied, they never reach
// the site's JetStream and time out at the hub.
func RemoteAdminDenies(site string) []string {
	out := make([]string, len(remoteAdminAPI))
	for i, s := range remoteAdminAPI {
		out[i] = "$JS." + site + ".API." + s
	}
	return out
}

// Protect applies the site's trust boundary to one leaf remote, whatever
// built it (the uplink block or a nats_config file); the remote's own deny
// lists are kept and added to. Inbound, the hub never writes what the agent
// stores or owns, never reaches cmd.> except through the downlink's
// <prefix>.<site>.cmd.>, never uses the site's JetStream outside its domain
// ($JS.API, KV and object store subjects), and, unless allowRemoteAdmin,
// only reads through $JS.<site>.API. Outbound, the raw streams, the agent's
// bookkeeping and inboxes, and the site's JetStream advisories and metrics
// stay local.
func Protect(r *server.RemoteLeafOpts, site string, allowRemoteAdmin bool) {
	own := agentSubjects()
	imports := append(own, "cmd.>", "$JS.API.>", "$KV.>", "$O.>", "$OBJ.>")
	if !allowRemoteAdmin {
		imports = append(imports, RemoteAdminDenies(site)...)
	}
	exports := append(own, "$JS.EVENT.>", LocalInboxPrefix+".>")
	r.DenyImports = addMissing(r.DenyImports, imports)
	r.DenyExports = addMissing(r.DenyExports, exports)
}

func addMissing(have, add []string) []string {
	out := slices.Clip(have)
	for _, s := range add {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}
