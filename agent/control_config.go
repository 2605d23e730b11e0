package agent

import (
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
