package agent

import (
	"context"

	"github.com/edge-agent/edge-agent/buffer"
)

// bufferPart owns the local streams and state.db for the agent.
type bufferPart struct{}

func (a *Agent) setupBuffer(ctx context.Context, cfg *Config) error {
	a.buf = &bufferPart{}
	return buffer.EnsureStreams(ctx, a.js, cfg.Buffer)
}
