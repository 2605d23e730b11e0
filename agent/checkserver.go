package agent

import (
	"fmt"
	"log/slog"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/edge-agent/edge-agent/uplink"
)

// CheckServer is the part of run's validation that agent.yaml alone cannot
// give: the whole nats_config file as nats-server parses it, the options
// merged from it and agent.yaml, and nats-server's own validation of them
// (server.NewServer validates without starting anything; the server is
// discarded). check-config and doctor call it so that a config they accept
// is one run accepts: every error is a ConfigError (exit 78).
func CheckServer(c *Config) error {
	opts, _, err := mergedOptions(c, slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	if opts.ServerName == "" {
		// run derives it from the machine id, creating state_dir/machine-id
		// where the image has none: a check must not write, and any name
		// of this form validates alike.
		opts.ServerName = ServerNameFor(c.Site, "check-config")
	}
	s, err := newServer(c, opts)
	if err != nil {
		return err
	}
	s.Shutdown()
	return nil
}

// newServer is server.NewServer with its refusals reported as config
// errors: they are the options' validation, so systemd must not restart
// into them.
func newServer(c *Config, opts *server.Options) (*server.Server, error) {
	s, err := server.NewServer(opts)
	if err == nil {
		return s, nil
	}
	ce := &ConfigError{File: c.Path, Msg: "nats-server rejects the options: " + uplink.RedactText(err.Error())}
	if c.NATSConfig != "" {
		ce.Key = "nats_config"
		ce.Msg = fmt.Sprintf("nats-server rejects the options merged from %s and agent.yaml: %s", c.NATSConfig, uplink.RedactText(err.Error()))
	}
	return nil, ce
}

// applyLocalAuth sets local_auth on the client port. When nats_config
// authenticates local clients itself (users, accounts, authorization, an
// operator), the agent's own connection, which logs in with local_auth,
// must be able to: otherwise the server starts and the agent fails to
// connect to it.
func applyLocalAuth(c *Config, opts *server.Options) error {
	la := c.LocalAuth
	if len(opts.Users) > 0 && la.User != "" {
		if slices.ContainsFunc(opts.Users, func(u *server.User) bool { return u.Username == la.User }) {
			return nil // one of the file's users: the file's entry is the one in force
		}
		return &ConfigError{File: c.Path, Key: "local_auth.user", Line: c.lineOf("local_auth.user"),
			Msg: fmt.Sprintf("%q is not a user of %s, which lists the local users (accounts or authorization users): name one of them, with its password", la.User, c.NATSConfig)}
	}
	if la.User != "" {
		opts.Username, opts.Password = la.User, la.Password
	}
	if la.Token != "" {
		opts.Authorization = la.Token
	}
	if !la.set() && (len(opts.Users) > 0 || len(opts.Nkeys) > 0 || len(opts.TrustedOperators) > 0 || opts.Username != "" || opts.Authorization != "") {
		return &ConfigError{File: c.Path, Key: "local_auth", Line: c.lineOf("local_auth"),
			Msg: fmt.Sprintf("%s requires local clients to authenticate, and the agent's own connection is one: set local_auth {user, password} to a user of that file (its authorization token as local_auth {token})", c.NATSConfig)}
	}
	return nil
}

// natsLineRE is the position nats-server puts before each parse error.
var natsLineRE = regexp.MustCompile(`^.*?:(\d+):\d+: `)

// unknownFieldRE names the field nats-server does not know.
var unknownFieldRE = regexp.MustCompile(`unknown field "([^"]+)"`)

// natsConfigError reports a nats_config file nats-server refuses, naming
// the file, the first line and key (nats-server lists its errors in no
// stable order: they are sorted by line), and for the keys the seed
// documents use on remotes but nats-server rejects there, what to write
// instead.
func natsConfigError(path string, err error) error {
	lineOf := func(s string) int {
		if m := natsLineRE.FindStringSubmatch(s); m != nil {
			n, _ := strconv.Atoi(m[1])
			return n
		}
		return 0
	}
	errs := strings.Split(strings.TrimSpace(uplink.RedactText(err.Error())), "\n")
	slices.SortStableFunc(errs, func(a, b string) int { return lineOf(a) - lineOf(b) })
	ce := &ConfigError{File: path, Key: "nats_config", Line: lineOf(errs[0]), Msg: "nats-server rejects it: " + strings.Join(errs, "; ")}
	if m := unknownFieldRE.FindStringSubmatch(errs[0]); m != nil {
		ce.Key = m[1]
	}
	if strings.Contains(ce.Msg, `unknown field "allow_`) {
		ce.Msg += ". A leaf remote takes only deny_import/deny_export (nats-server has no allow lists on remotes): keep deny_* on the leaf, and put the allow lists on the hub as the permissions of the leaf user the remote connects as (publish allow = what the site may send, subscribe allow = what it may receive)"
	}
	return ce
}

// duplicateRemote refuses an uplink remote that dials a hub address a
// nats_config remote already dials for the same local account: one site
// would hold two leaf connections to one hub (nats-server refuses an
// identical pair only when the server starts, which made run exit 1 and
// systemd restart it in a loop).
func duplicateRemote(c *Config, fileRemotes []*server.RemoteLeafOpts, up *server.RemoteLeafOpts) error {
	acct := func(r *server.RemoteLeafOpts) string {
		if r.LocalAccount == "" {
			return server.DEFAULT_GLOBAL_ACCOUNT
		}
		return r.LocalAccount
	}
	for i, fr := range fileRemotes {
		if acct(fr) != acct(up) {
			continue
		}
		for _, fu := range fr.URLs {
			for j, uu := range up.URLs {
				if sameHubAddr(fu, uu) {
					return &ConfigError{File: c.Path, Key: fmt.Sprintf("uplink.hub_urls[%d]", j), Line: c.lineOf(fmt.Sprintf("uplink.hub_urls[%d]", j)),
						Msg: fmt.Sprintf("%s is also dialled by leafnodes.remotes[%d] in %s (account %s): one site, one leaf connection to its hub; remove that remote from %s (the uplink block's remote carries the agent's protections) or drop the uplink block", uplink.RedactText(uu.String()), i, c.NATSConfig, acct(up), c.NATSConfig)}
				}
			}
		}
	}
	return nil
}

// sameHubAddr compares host and port, with each scheme's default port.
func sameHubAddr(a, b *url.URL) bool {
	port := func(u *url.URL) string {
		if p := u.Port(); p != "" {
			return p
		}
		switch u.Scheme {
		case "ws":
			return "80"
		case "wss":
			return "443"
		}
		return strconv.Itoa(server.DEFAULT_LEAFNODE_PORT)
	}
	return strings.EqualFold(a.Hostname(), b.Hostname()) && port(a) == port(b)
}
