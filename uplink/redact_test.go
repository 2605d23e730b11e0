package uplink

import "testing"

func TestRedactText(t *testing.T) {
	for in, want := range map[string]string{
		"dial nats://leaf:secret@hub:7422: refused":             "dial nats://leaf:REDACTED@hub:7422: refused",
		"urls=[tls://s3cr3t@hub-1:7422 wss://u:p@hub-2/leaf]":   "urls=[tls://REDACTED@hub-1:7422 wss://u:REDACTED@hub-2/leaf]",
		`"url":"nats://leaf:REDACTED@hub:7422"`:                 `"url":"nats://leaf:REDACTED@hub:7422"`,
		"mail ops@example.com about nats://hub:7422, not a URL": "mail ops@example.com about nats://hub:7422, not a URL",
		"no url here": "no url here",
	} {
		if got := RedactText(in); got != want {
			t.Errorf("RedactText(%q) = %q, want %q", in, got, want)
		}
	}
}
