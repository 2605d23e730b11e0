package agent_test

import (
	"github.com/edge-agent/edge-agent/agent"
	"github.com/edge-agent/edge-agent/agent/client"
)

// The status goldens and the control socket tests stay with the fixtures
// and the daemon they test; the code under test is the client's.
func init() {
	agent.RenderStatus = client.RenderStatus
	agent.RenderNotRunning = client.RenderNotRunning
	agent.FetchStatus = client.FetchStatus
	agent.ErrNotRunning = client.ErrNotRunning
	agent.AckLoss = client.AckLoss
}
