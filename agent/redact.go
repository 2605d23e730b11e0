package agent

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/edge-agent/edge-agent/uplink"
)

// redactHandler removes passwords and tokens written in URLs from every log
// line: hub URLs carry them (nats://leaf:secret@hub:7422), and nats-server,
// nats.go and our own errors echo those URLs.
type redactHandler struct{ next slog.Handler }

func (h redactHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, l)
}

func (h redactHandler) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, uplink.RedactText(r.Message), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(redactAttr(a))
		return true
	})
	return h.next.Handle(ctx, out)
}

func (h redactHandler) WithAttrs(as []slog.Attr) slog.Handler {
	red := make([]slog.Attr, len(as))
	for i, a := range as {
		red[i] = redactAttr(a)
	}
	return redactHandler{h.next.WithAttrs(red)}
}

func (h redactHandler) WithGroup(name string) slog.Handler {
	return redactHandler{h.next.WithGroup(name)}
}

func redactAttr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		if s := v.String(); uplink.RedactText(s) != s {
			return slog.String(a.Key, uplink.RedactText(s))
		}
	case slog.KindGroup:
		g := v.Group()
		red := make([]any, len(g))
		for i, ga := range g {
			red[i] = redactAttr(ga)
		}
		return slog.Group(a.Key, red...)
	case slog.KindAny:
		// Errors, URLs and string slices print through fmt: redact the text.
		s := fmt.Sprint(v.Any())
		if r := uplink.RedactText(s); r != s {
			return slog.String(a.Key, r)
		}
	}
	return a
}
