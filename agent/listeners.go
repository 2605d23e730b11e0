package agent

import (
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"strconv"

	"github.com/nats-io/nats-server/v2/server"
)

// loadNATSConfig parses nats_config as nats-server would; check-config and
// run refuse the same file for the same reason.
func loadNATSConfig(c *Config) (*server.Options, error) {
	fi, err := os.Stat(c.NATSConfig)
	if err != nil {
		return nil, c.keyErr("nats_config", fmt.Sprintf("cannot read %s: %v", c.NATSConfig, err))
	}
	if !fi.Mode().IsRegular() {
		return nil, c.keyErr("nats_config", fmt.Sprintf("%s is not a regular file (a nats-server config file is expected)", c.NATSConfig))
	}
	fo, err := server.ProcessConfigFile(c.NATSConfig)
	if err != nil {
		return nil, natsConfigError(c.NATSConfig, err)
	}
	return fo, nil
}

// checkListeners is the one place that decides who may connect: every
// listener the embedded server opens beyond loopback, whether agent.yaml
// or nats_config opened it, needs authentication, and a user needs a
// password. fo is the parsed nats_config (empty without one); the agent's
// listen, monitor_listen and local_auth win over it as in serverOptions.
func (c *Config) checkListeners(fo *server.Options) error {
	la := c.LocalAuth
	if la.Password != "" && la.User == "" {
		return c.keyErr("local_auth.password", "password needs user")
	}
	if la.User != "" && la.Password == "" && la.Token == "" {
		return c.keyErr("local_auth.password", fmt.Sprintf("required with local_auth.user %q: without one anyone may connect as %q; set a password, or use local_auth.token instead", la.User, la.User))
	}
	clientGap := clientAuthGap(fo, la)
	host, _, err := splitListen(c.Listen)
	if err != nil {
		return c.keyErr("listen", err.Error())
	}
	if !isLoopback(host) && clientGap != "" {
		if findNode(c.root, "local_auth") != nil && !la.set() {
			clientGap = "local_auth is empty (an empty user or token authenticates nobody)"
		}
		return c.keyErr("listen", fmt.Sprintf("%q is reachable beyond this device but %s: anyone on the network could read and inject data. Set local_auth {user, password} or {token}, or listen on 127.0.0.1", c.Listen, clientGap))
	}
	for _, m := range []struct {
		key, addr string
		file      bool
	}{
		{"monitor_listen", c.MonitorListen, false},
		{"http", hostPort(fo.HTTPHost, host, fo.HTTPPort), true},
		{"https", hostPort(fo.HTTPHost, host, fo.HTTPSPort), true},
	} {
		if m.addr == "" || m.file && m.key == "http" && c.MonitorListen != "" {
			continue // monitor_listen replaces the file's http
		}
		mh, _, err := net.SplitHostPort(m.addr)
		if err != nil {
			return c.keyErr(m.key, fmt.Sprintf("%q is not host:port (\"\" disables)", m.addr))
		}
		if isLoopback(mh) {
			continue
		}
		msg := fmt.Sprintf("the monitoring endpoint %s is reachable beyond this device, and nats-server's monitoring has no authentication (it lists connections, subjects and streams): bind it to 127.0.0.1", m.addr)
		if m.file {
			return &ConfigError{File: c.NATSConfig, Key: m.key, Msg: msg}
		}
		return c.keyErr(m.key, msg)
	}
	for _, l := range []struct {
		key, host string
		port      int
		gap       func() string
	}{
		{"websocket", fo.Websocket.Host, fo.Websocket.Port, func() string {
			w := fo.Websocket
			return ownAuthGap(w.NoAuthUser, w.Username, w.Password, w.Token != "" || w.JWTCookie != "", w.TLSMap, w.TLSConfig, clientGap)
		}},
		{"mqtt", fo.MQTT.Host, fo.MQTT.Port, func() string {
			m := fo.MQTT
			return ownAuthGap(m.NoAuthUser, m.Username, m.Password, m.Token != "", m.TLSMap, m.TLSConfig, clientGap)
		}},
		{"leafnodes", fo.LeafNode.Host, fo.LeafNode.Port, func() string {
			ln := fo.LeafNode
			if g := usersGap(ln.Users); g != "" {
				return g
			}
			// Without its own authorization a leafnode listener checks
			// the client users (nats-server's isLeafNodeAuthorized).
			return ownAuthGap("", ln.Username, ln.Password, len(ln.Users) > 0 || ln.Nkey != "", ln.TLSMap, ln.TLSConfig, clientGap)
		}},
		{"cluster", fo.Cluster.Host, fo.Cluster.Port, func() string {
			return ownAuthGap("", fo.Cluster.Username, fo.Cluster.Password, false, false, fo.Cluster.TLSConfig, "no authorization is configured for routes")
		}},
		{"gateway", fo.Gateway.Host, fo.Gateway.Port, func() string {
			return ownAuthGap("", fo.Gateway.Username, fo.Gateway.Password, false, false, fo.Gateway.TLSConfig, "no authorization is configured for gateways")
		}},
	} {
		if l.port == 0 || isLoopback(l.host) {
			continue
		}
		if gap := l.gap(); gap != "" {
			return &ConfigError{File: c.NATSConfig, Key: l.key, Msg: fmt.Sprintf("listens on %s, beyond this device, but %s: anyone on the network could connect. Add an authorization block to %s (or local_auth in %s where nats-server applies the client users to it), or bind it to 127.0.0.1",
				hostPort(l.host, "0.0.0.0", l.port), gap, l.key, c.Path)}
		}
	}
	return nil
}

func (c *Config) keyErr(key, msg string) error {
	return &ConfigError{File: c.Path, Key: key, Line: c.lineOf(key), Msg: msg}
}

// hostPort is the address a listener binds: an empty host is def, port 0
// is no listener at all.
func hostPort(host, def string, port int) string {
	if port == 0 {
		return ""
	}
	if host == "" {
		host = def
	}
	return net.JoinHostPort(host, strconv.Itoa(port))
}

// clientAuthGap says why the client port would let a stranger in, "" if it
// would not: local_auth, or the file's authorization, accounts, nkeys,
// operator or verified client certificates.
func clientAuthGap(o *server.Options, la LocalAuth) string {
	if o.NoAuthUser != "" {
		return fmt.Sprintf("nats_config's no_auth_user lets anyone in as %q", o.NoAuthUser)
	}
	if la.Token != "" || la.User != "" && la.Password != "" {
		return ""
	}
	if o.Username != "" && o.Password == "" {
		return fmt.Sprintf("nats_config's user %q has no password", o.Username)
	}
	if g := usersGap(o.Users); g != "" {
		return g
	}
	if o.Username != "" || o.Authorization != "" || len(o.Users) > 0 || len(o.Nkeys) > 0 || len(o.TrustedOperators) > 0 ||
		o.TLSVerify || o.CustomClientAuthentication != nil || o.AuthCallout != nil {
		return ""
	}
	return "no local_auth is configured"
}

func usersGap(users []*server.User) string {
	for _, u := range users {
		if u.Password == "" {
			return fmt.Sprintf("nats_config's user %q has no password", u.Username)
		}
	}
	return ""
}

// ownAuthGap is clientAuthGap for a listener with its own authorization
// (user and password, token or users, verified client certificates), which
// otherwise falls back to fallback.
func ownAuthGap(noAuthUser, user, password string, other, tlsMap bool, tc *tls.Config, fallback string) string {
	switch {
	case noAuthUser != "":
		return fmt.Sprintf("its no_auth_user lets anyone in as %q", noAuthUser)
	case user != "" && password == "":
		return fmt.Sprintf("its user %q has no password", user)
	case user != "" || other || tc != nil && tc.ClientAuth == tls.RequireAndVerifyClientCert || tlsMap && tc != nil:
		return ""
	}
	return fallback
}
