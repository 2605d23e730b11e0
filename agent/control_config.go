package agent

import (
	"context"
	"net/http"
	"path/filepath"
)

// ConfigInfo is GET /v1/config: which file the running agent was started
// with, so `edge-agent doctor` checks the config actually in force.
type ConfigInfo struct {
	Path string `json:"path"`
}

func (a *Agent) serveConfigPath(w http.ResponseWriter, _ *http.Request) {
	p := a.Config().Path
	// The agent's own working directory resolves a relative --config.
	if abs, err := filepath.Abs(p); err == nil {
		p = abs
	}
	writeJSON(w, http.StatusOK, ConfigInfo{Path: p})
}

// FetchConfigPath asks the agent behind socket which config it runs with.
// Nothing answering wraps ErrNotRunning.
func FetchConfigPath(ctx context.Context, socket string) (string, error) {
	var ci ConfigInfo
	err := controlGet(ctx, socket, "/v1/config", &ci)
	return ci.Path, err
}
