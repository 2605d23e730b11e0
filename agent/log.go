package agent

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// NewLogger builds the agent's slog logger. The level is a LevelVar so
// SIGHUP can change it without a restart.
func NewLogger(w io.Writer, format string, level *slog.LevelVar) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler = slog.NewTextHandler(w, opts)
	if format == "json" {
		h = slog.NewJSONHandler(w, opts)
	}
	return slog.New(newRateLimitHandler(redactHandler{h}, logBurst, logWindow))
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("%q: want debug, info, warn or error", s)
	}
	return l, nil
}

// natsLogger bridges nats-server's logger into slog so there is one log
// stream with one format; trace maps to debug because nats traces are
// per-message and must never be on by accident.
type natsLogger struct{ l *slog.Logger }

func (n natsLogger) Noticef(f string, v ...any) { n.l.Info(msg(f, v)) }
func (n natsLogger) Warnf(f string, v ...any)   { n.l.Log(context.Background(), warnLevel(f), msg(f, v)) }
func (n natsLogger) Fatalf(f string, v ...any)  { n.l.Error(msg(f, v), "fatal", true) }
func (n natsLogger) Errorf(f string, v ...any)  { n.l.Error(msg(f, v)) }
func (n natsLogger) Debugf(f string, v ...any)  { n.l.Debug(msg(f, v)) }
func (n natsLogger) Tracef(f string, v ...any)  { n.l.Debug(msg(f, v)) }

// warnLevel puts nats-server's plaintext-password warning at debug: it is
// not actionable here (the agent itself logs in with local_auth's password,
// so that cannot be a bcrypt hash, and localperms.go's users have random
// ones nobody types).
func warnLevel(f string) slog.Level {
	if f == "Plaintext passwords detected, use nkeys or bcrypt" {
		return slog.LevelDebug
	}
	return slog.LevelWarn
}

func msg(f string, v []any) string { return strings.TrimSpace(fmt.Sprintf(f, v...)) }
