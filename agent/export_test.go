package agent

import (
	"context"
	"io"
	"time"
)

// Package client fetches and renders what this package serves, and it
// imports this package, so an internal test cannot import it: these tests
// reach it through these variables, which client_test.go sets.
var (
	RenderStatus     func(w io.Writer, s Status, now time.Time, tty bool)
	RenderNotRunning func(w io.Writer, socket string, cause error, last *Status, lastErr error, now time.Time, tty bool)
	FetchStatus      func(ctx context.Context, socket string) (Status, error)
	ErrNotRunning    error
	AckLoss          func(ctx context.Context, socket string) (AckLossResponse, error)
)

// ansiYellow is the warning colour of RenderStatus on a terminal.
const ansiYellow = "\x1b[33m"
