package agent

import "context"

// controlPart owns the local control API, metrics and systemd notify.
type controlPart struct{}

func (a *Agent) setupControl(ctx context.Context, cfg *Config) error {
	a.ctl = &controlPart{}
	return nil
}
