package uplink

import (
	"strings"
	"testing"
)

func TestClassifyLine(t *testing.T) {
	for _, tc := range []struct {
		line   string
		class  ReasonClass
		reason string
	}{
		{`Error trying to connect as leafnode to remote server "127.0.0.1:1" (attempt 1): dial tcp 127.0.0.1:1: connect: connection refused`, ReasonTCP, "TCP: connection refused 127.0.0.1:1"},
		{`Error trying to connect as leafnode to remote server "x.invalid:4222" (attempt 1): lookup for host "x.invalid": lookup x.invalid on 10.0.0.53:53: no such host`, ReasonDNS, "DNS: x.invalid not found"},
		{`127.0.0.1:4 - lid:5 - Leafnode Error 'Authorization Violation'`, ReasonAuth, "auth: authorization violation"},
		{`127.0.0.1:4 - lid:18 - Leafnode Error 'Authentication Timeout'`, ReasonOther, "hub busy: the leaf handshake did not finish"},
		{`127.0.0.1:4 - lid:5 - Leafnode Error 'Permissions Violation for Publish to "edge.s2.telemetry.x"'`, ReasonPermission, `permission: Permissions Violation for Publish to "edge.s2.telemetry.x"`},
	} {
		c, r, ok := classifyLine(tc.line)
		if !ok || c != tc.class || !strings.HasPrefix(r, tc.reason) {
			t.Errorf("classifyLine(%q) = %s %q %v, want %s %q", tc.line, c, r, ok, tc.class, tc.reason)
		}
	}
	for _, line := range []string{
		"Server is ready",
		// The gate's 503 is pacing; its 502 reaches the link from the gate.
		`Error trying to connect as leafnode to remote server "127.0.0.1:4" (attempt 3): proxy CONNECT failed: ` + gateClosedStatus,
		`Error trying to connect as leafnode to remote server "127.0.0.1:4" (attempt 1): proxy CONNECT failed: 502 dial tcp 127.0.0.1:4: connect: connection refused`,
	} {
		if c, r, ok := classifyLine(line); ok {
			t.Errorf("classifyLine(%q) = %s %q, want not a link problem", line, c, r)
		}
	}
}
