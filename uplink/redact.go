package uplink

import (
	"regexp"
	"strings"
)

// userinfoRE matches the user part of a URL inside free text: hub URLs are
// written with credentials in them (nats://leaf:secret@hub:7422, the seed
// documents' style) and echoed by nats-server, nats.go and our own errors.
var userinfoRE = regexp.MustCompile(`([A-Za-z][A-Za-z0-9+.-]*://)([^\s/@"'<>]+)@`)

// RedactText replaces every password or token written in a URL within s:
// user:password keeps the user, a bare user part is a token. Text without
// URLs is returned unchanged.
func RedactText(s string) string {
	if !strings.Contains(s, "@") {
		return s
	}
	return userinfoRE.ReplaceAllStringFunc(s, func(m string) string {
		sub := userinfoRE.FindStringSubmatch(m)
		user, _, hasPw := strings.Cut(sub[2], ":")
		if !hasPw {
			return sub[1] + "REDACTED@"
		}
		if user == "REDACTED" {
			return m
		}
		return sub[1] + user + ":REDACTED@"
	})
}
