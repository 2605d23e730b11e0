package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"

	"github.com/edge-agent/edge-agent/buffer"
)

// AckLossResponse is POST /v1/buffer/ack-loss: the losses the technician
// acknowledged (empty when there were none).
type AckLossResponse struct {
	Acknowledged []buffer.Loss `json:"acknowledged"`
}

// handleAckLoss clears the recorded losses, which keep status critical
// until a technician has seen them. Only the control socket reaches it
// (root, the agent's user and the edge-agent group).
func (a *Agent) handleAckLoss(w http.ResponseWriter, _ *http.Request) {
	st := a.State()
	if st == nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "the buffer is not set up yet"})
		return
	}
	done, err := st.AckLosses()
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
		return
	}
	if done == nil {
		done = []buffer.Loss{}
	}
	writeJSON(w, http.StatusOK, AckLossResponse{Acknowledged: done})
}

// AckLoss asks the daemon behind socket to clear its recorded losses.
func AckLoss(ctx context.Context, socket string) (AckLossResponse, error) {
	var r AckLossResponse
	c := controlClient(socket)
	defer c.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://edge-agent/v1/buffer/ack-loss", nil)
	if err != nil {
		return r, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return r, fmt.Errorf("control socket %s: %w", socket, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return r, fmt.Errorf("control socket %s: %s: %s", socket, resp.Status, b)
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return r, fmt.Errorf("control socket %s: decode answer: %w", socket, err)
	}
	return r, nil
}
