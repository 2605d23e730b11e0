package uplink

import (
	"context"
	"fmt"
	"net/url"
	"regexp"
	"strings"
)

// authMethod names the way this config authenticates the leaf to the hub,
// and the keys a technician changes when the hub refuses it, in the order
// nats-server's leaf CONNECT prefers them: creds, nkey, user or token.
func authMethod(c *Config) (method, keys string) {
	userInURL, tokenInURL := false, false
	for _, s := range c.HubURLs {
		if u, err := url.Parse(s); err == nil && u.User != nil {
			if _, ok := u.User.Password(); ok {
				userInURL = true
			} else {
				tokenInURL = true
			}
		}
	}
	switch {
	case c.Credentials != "":
		return "creds", "uplink.credentials (" + c.Credentials + ")"
	case c.NkeySeed != "":
		return "nkey", "uplink.nkey_seed (" + c.NkeySeed + ")"
	case c.User != "":
		return "user/password", fmt.Sprintf("uplink.user (%q) and uplink.password", c.User)
	case userInURL:
		return "user/password", "the user:password in uplink.hub_urls"
	case c.Token != "":
		return "token", "uplink.token"
	case tokenInURL:
		return "token", "the token in uplink.hub_urls"
	}
	return "", ""
}

// authReason is the hub's refusal of this site's credentials (its words
// in parentheses), naming the configured method.
func authReason(c *Config, words string) string {
	method, _ := authMethod(c)
	if method == "" {
		return fmt.Sprintf("auth: the hub requires credentials and none are configured (%s)", words)
	}
	return fmt.Sprintf("auth: the hub refused this site's %s (%s)", method, words)
}

// Reason texts the fixes below are chosen by; the diagnosis writes them.
const (
	clientCertMissing = "the hub requires a client certificate"
	clientCertRefused = "the hub refused the client certificate"
	tcpRefusedWords   = "connection refused"
)

// FixFor is the next step for a link reason, naming the config key to
// change where the reason is this site's config. Empty when the class
// has no specific fix (the caller has a generic one).
func FixFor(c *Config, class ReasonClass, reason string) string {
	switch class {
	case ReasonDNS:
		return "check the hub name in uplink.hub_urls and the site's DNS (resolvectl status)"
	case ReasonTCP:
		if strings.Contains(reason, tcpRefusedWords) {
			return "the hub's host answers but nothing accepts on that port: the hub is down or restarting (the agent dials again the moment it accepts), or the port in uplink.hub_urls is wrong"
		}
		return "check the WAN/firewall: outbound TCP to the hub port must be open (the agent dials again as soon as the hub answers)"
	case ReasonTLS:
		switch {
		case strings.Contains(reason, clientCertMissing):
			return "set uplink.tls.cert_file and uplink.tls.key_file to this site's client certificate (signed by a CA the hub trusts)"
		case strings.Contains(reason, clientCertRefused):
			return "the certificate in uplink.tls.cert_file is not one the hub accepts: get one signed by the CA the hub trusts (and check the device clock)"
		case strings.Contains(reason, "use tls://"):
			return "use tls:// in uplink.hub_urls (and set uplink.tls.ca_file unless the hub's certificate is publicly trusted)"
		}
		return "check uplink.tls.ca_file, uplink.tls.server_name and the device clock; `edge-agent doctor` shows the hub's certificate chain"
	case ReasonAuth:
		if _, keys := authMethod(c); keys != "" {
			return "check " + keys + " with the hub operator: they must match this site's leaf user on the hub"
		}
		return "check this site's credentials with the hub operator: uplink.user and uplink.password, uplink.token, uplink.nkey_seed or uplink.credentials"
	case ReasonPermission:
		return "the hub's leaf user for this site may not use a subject it needs: ask the hub operator to allow it (docs/UPLINK.md: Hub side)"
	}
	return ""
}

// connPrefixRE is nats-server's connection prefix on a log line,
// "127.0.0.1:40569 - lid:5 - ".
var connPrefixRE = regexp.MustCompile(`^\S+ - [a-z]+:\d+ - `)

// hubWords rewrites a nats-server line about the uplink connection for
// status: the server sees only the link's loopback gate as its peer, so
// the connection prefix goes and the hub is named as configured.
func (l *Link) hubWords(reason string) string {
	gateAddr := l.gate.ln.Addr().String()
	if !strings.Contains(reason, gateAddr) {
		return reason
	}
	reason = connPrefixRE.ReplaceAllString(reason, "")
	reason = strings.ReplaceAll(reason, gateAddr, l.hubName())
	if strings.Contains(reason, "Read Error") || strings.Contains(reason, "connection closed") {
		return fmt.Sprintf("hub %s closed the connection (%s)", l.hubName(), reason)
	}
	return "hub " + l.hubName() + ": " + reason
}

// hubName is the hub as configured, credentials redacted: host:port of
// each hub URL.
func (l *Link) hubName() string {
	var names []string
	for _, s := range l.cfg.HubURLs {
		if u, err := url.Parse(s); err == nil {
			names = append(names, hubAddr(u))
		}
	}
	return strings.Join(names, ", ")
}

// explain words a reason for status: the hub named as configured, never
// the loopback gate, and a refusal of credentials naming the method.
func (l *Link) explain(class ReasonClass, reason string) string {
	reason = l.hubWords(reason)
	if class == ReasonAuth {
		return authReason(l.cfg, strings.TrimPrefix(reason, "auth: "))
	}
	return reason
}

// Diagnose probes the hub URLs of c as the link does after a failed
// attempt: DNS, TCP, then TLS (the hub's certificate, then whether the hub
// requires and accepts this site's client certificate). Empty when the
// hub looks reachable and any cause lies above TLS.
func Diagnose(ctx context.Context, c *Config) (class ReasonClass, reason string) {
	return diagnose(ctx, c)
}
