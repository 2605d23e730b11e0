package agent

import (
	"crypto/rand"
	"encoding/hex"
	"slices"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/edge-agent/edge-agent/agent/fleetconfig"
	"github.com/edge-agent/edge-agent/buffer"
)

// The agent's own streams are the agent's: without local_auth, loopback
// clients connect anonymously and are mapped (no_auth_user) to localUser,
// whose permissions deny the JetStream API calls that would delete, purge,
// reconfigure, restore over or delete messages from TELEMETRY, ALERTS and
// EDGE_AGENT_STATE, and writes to the cursor backup's subjects. Everything
// else stays open: publishing readings, their own streams, consumers, KV.
// Nor may they forge JetStream advisories (the agent acts on
// stream-deleted ones). The agent's own connection logs in as agentUser
// with a password made for this process, so it keeps every right.
//
// With local_auth every client must log in as that one user, the local
// admin, who may do all of this (that is how a technician repairs a
// stream). A nats_config that defines its own users, accounts, operators
// or auth is left as it is: its author decides who may do what.
const (
	localUser = "local"
	agentUser = "edge-agent"
)

// setLocalPermissions adds the two users to opts when the agent owns
// client authentication (no local_auth and no auth in nats_config).
func setLocalPermissions(opts *server.Options, site string) {
	if opts.Username != "" || opts.Authorization != "" || len(opts.Users) > 0 || len(opts.Nkeys) > 0 ||
		len(opts.Accounts) > 0 || len(opts.TrustedOperators) > 0 || len(opts.TrustedKeys) > 0 ||
		opts.NoAuthUser != "" || opts.CustomClientAuthentication != nil || opts.AuthCallout != nil {
		return
	}
	opts.Users = []*server.User{
		// In plaintext, as the local user's: the agent's own connection
		// holds it in the same memory anyway, and a bcrypt hash costs
		// time to make at each start and for the server to check at each
		// login, before READY.
		{Username: agentUser, Password: agentPassword},
		// Nobody logs in as localUser: anonymous clients are mapped to it
		// (nats-server needs its password in plaintext for that).
		{Username: localUser, Password: randomPassword(),
			Permissions: &server.Permissions{Publish: &server.SubjectPermission{Deny: ownStreamDenies(site)}}},
	}
	opts.NoAuthUser = localUser
}

// agentPassword is the agent user's password, made once per process.
var agentPassword = randomPassword()

func randomPassword() string {
	var b [24]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// agentLogin is the login the agent's own connection uses, if
// setLocalPermissions made one.
func agentLogin(opts *server.Options) (user, password string, ok bool) {
	if opts == nil || opts.NoAuthUser != localUser {
		return "", "", false
	}
	if !slices.ContainsFunc(opts.Users, func(u *server.User) bool { return u.Username == agentUser }) {
		return "", "", false
	}
	return agentUser, agentPassword, true
}

// ownStreamDenies are the JetStream API subjects (plain and through the
// site's domain) that change the agent's streams, plus the subjects of the
// cursor backup and of the site's copy of its remote config (a local
// client writing there would feed the applier fragments the hub never
// sent), and JetStream's advisories.
func ownStreamDenies(site string) []string {
	out := []string{"edge-agent.cursor.>", "edge-agent.config.>", "$JS.EVENT.>"}
	streams := append([]string{buffer.StateStream, fleetconfig.LocalStream}, buffer.Lanes...)
	for _, prefix := range []string{"$JS.API.", "$JS." + site + ".API."} {
		out = append(out, prefix+"ACCOUNT.PURGE.>")
		for _, op := range []string{"STREAM.CREATE", "STREAM.UPDATE", "STREAM.DELETE", "STREAM.PURGE", "STREAM.RESTORE", "STREAM.MSG.DELETE", "STREAM.PEER.REMOVE"} {
			for _, s := range streams {
				out = append(out, prefix+op+"."+s)
			}
		}
	}
	return out
}
