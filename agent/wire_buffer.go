package agent

import (
	"context"

	"github.com/edge-agent/edge-agent/buffer"
)

func (a *Agent) setupBuffer(ctx context.Context, cfg *Config) error {
	return buffer.EnsureStreams(ctx, a.js, cfg.Buffer)
}
