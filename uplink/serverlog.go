package uplink

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/nats-io/nats-server/v2/server"
)

// The embedded nats-server's log is where the link learns why the leaf
// connection failed or dropped: this file is the tap that feeds the link
// (Link.Logger, ServerLog) and the one classifier of its lines, which
// doctor uses too (ClassifyLine).

var (
	remoteRE = regexp.MustCompile(`remote server "([^"]+)"`)
	lookupRE = regexp.MustCompile(`lookup (?:for host "([^"]+)"|([^ :]+))`)
	quotedRE = regexp.MustCompile(`'([^']+)'`)
)

// serverLine is a classified server log line about the link.
type serverLine struct {
	class  ReasonClass
	reason string
}

// ServerLog is the tap for the embedded server's warning and error lines;
// it must not block, because the server calls it from its own goroutines.
func (l *Link) ServerLog(msg string) {
	class, reason, ok := classifyLine(msg)
	if !ok {
		return
	}
	select {
	case l.lines <- serverLine{class, reason}:
	default: // full: the newest lines matter less than not blocking the server
	}
}

// Logger wraps the embedded server's logger for SetLoggerV2: notices,
// warnings and errors also reach the link's diagnosis (ServerLog), and the
// dial errors the link's pacing makes go to debug: the server's line about
// a CONNECT the closed gate refused, and a failed dial for the same reason
// as the previous one. nats-server thins its own dial errors only within
// one retry loop, and each connection that fails in the handshake starts a
// new one; a site whose hub rejects it for days at a 60 s backoff would
// write thousands of identical lines a day to its SD card. Kept at their
// level: the first dial error and any that differs from the previous one
// (the link also logs each new reason once, as a warning).
func (l *Link) Logger(inner server.Logger) server.Logger { return linkLogger{inner, l} }

type linkLogger struct {
	server.Logger
	l *Link
}

func (g linkLogger) Noticef(f string, v ...any) {
	g.Logger.Noticef(f, v...)
	g.l.ServerLog(fmt.Sprintf(f, v...))
}

// Debugf passes on nats-server's dial errors: it logs a retry loop's
// later ones at debug only (the agent enables debug and filters by level
// in slog), and a hub name that does not resolve fails before the gate
// sees the attempt.
func (g linkLogger) Debugf(f string, v ...any) {
	g.Logger.Debugf(f, v...)
	if strings.Contains(f, "trying to connect as leafnode") {
		g.l.ServerLog(fmt.Sprintf(f, v...))
	}
}

func (g linkLogger) Warnf(f string, v ...any) {
	g.Logger.Warnf(f, v...)
	g.l.ServerLog(fmt.Sprintf(f, v...))
}

func (g linkLogger) Errorf(f string, v ...any) {
	m := fmt.Sprintf(f, v...)
	if g.l.repeatedDialError(m) {
		g.Logger.Debugf(f, v...)
	} else {
		g.Logger.Errorf(f, v...)
	}
	g.l.ServerLog(m)
}

// repeatedDialError reports whether msg is a failed leaf dial for the same
// reason as the previous one since the last connect, or the server's note
// of a CONNECT the closed gate refused.
func (l *Link) repeatedDialError(msg string) bool {
	m := dialErrorRE.FindStringSubmatch(msg)
	if m == nil {
		return false
	}
	reason := m[1]
	if strings.Contains(reason, gateClosedStatus) {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	repeat := reason == l.lastDial
	l.lastDial = reason
	return repeat
}

// dialErrorRE finds the reason in nats-server's line about a failed leaf
// dial; the attempt number before it changes every time.
var dialErrorRE = regexp.MustCompile(`trying to connect as leafnode.*\(attempt \d+\): (.*)$`)

// classifyLine maps one nats-server log line about the leaf connection to a
// reason class and a technician-readable reason; ok is false for lines that
// are not about the link.
func classifyLine(msg string) (class ReasonClass, reason string, ok bool) {
	low := strings.ToLower(msg)
	addr := ""
	if m := remoteRE.FindStringSubmatch(msg); m != nil {
		addr = m[1]
	}
	switch {
	// The server's lines about the link gate's replies: a 503 is the link's
	// own pacing, and the gate reports a failed dial (502) itself.
	case strings.Contains(low, "proxy connect failed"):
		return "", "", false
	// Through the gate nats-server no longer upgrades a nats:// remote to
	// TLS when the hub asks for it.
	case strings.Contains(low, "tls configuration mismatch"):
		return ReasonTLS, "TLS: the hub requires TLS: use tls:// in uplink.hub_urls (and uplink.tls.ca_file unless the hub's certificate is publicly trusted)", true
	// The hub closes a leaf whose CONNECT came too late with "Authentication
	// Timeout": a busy hub or slow link, not rejected credentials.
	case strings.Contains(low, "authentication timeout"):
		return ReasonOther, "hub busy: the leaf handshake did not finish within the hub's auth timeout (slow link or overloaded hub; retrying)", true
	// The hub's words only: the link names the configured method (authReason).
	case strings.Contains(low, "user authentication expired"):
		return ReasonAuth, "auth: user authentication expired", true
	case strings.Contains(low, "authorization violation"), strings.Contains(low, "authentication"):
		return ReasonAuth, "auth: authorization violation", true
	case strings.Contains(low, "permissions violation"):
		r := "permission: the hub denied a subject"
		if m := quotedRE.FindStringSubmatch(msg); m != nil {
			r = "permission: " + m[1]
		}
		return ReasonPermission, r, true
	case strings.Contains(low, "duplicate") && strings.Contains(low, "leafnode"):
		return ReasonDuplicate, "duplicate: another leaf with this site/server name is connected to the hub", true
	case strings.Contains(low, "no such host"):
		host := addr
		if m := lookupRE.FindStringSubmatch(msg); m != nil {
			host = m[1] + m[2]
		}
		return ReasonDNS, fmt.Sprintf("DNS: %s not found", host), true
	case strings.Contains(low, "connection refused"):
		return ReasonTCP, fmt.Sprintf("TCP: connection refused %s", addr), true
	case strings.Contains(low, "i/o timeout") && strings.Contains(low, "connect as leafnode"):
		return ReasonTCP, fmt.Sprintf("TCP: no answer from %s (timeout)", addr), true
	case strings.Contains(low, "certificate has expired"):
		return ReasonTLS, "TLS: certificate expired", true
	case strings.Contains(low, "unknown authority"):
		return ReasonTLS, "TLS: hub certificate signed by unknown authority (check uplink.tls.ca_file)", true
	case strings.Contains(low, "tls handshake"), strings.Contains(low, "tls: "), strings.Contains(low, "x509"):
		return ReasonTLS, "TLS: " + msg, true
	case strings.Contains(low, "connect as leafnode"):
		return ReasonOther, msg, true
	case strings.Contains(low, "leafnode") && (strings.Contains(low, "error") || strings.Contains(low, "closed")):
		return ReasonOther, msg, true
	}
	return "", "", false
}

// ClassifyLine reads one nats-server log line about a leaf connection to
// the hub of c as the link does; ok is false for lines about something
// else. A refusal of credentials names the configured method.
func ClassifyLine(c *Config, line string) (class ReasonClass, reason string, ok bool) {
	class, reason, ok = classifyLine(line)
	if class == ReasonAuth {
		reason = authReason(c, strings.TrimPrefix(reason, "auth: "))
	}
	return class, reason, ok
}
