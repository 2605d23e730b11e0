package agent

import (
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
	if st == nil || a.checking() {
		// Not before the start's check: it may record losses the
		// technician has not seen yet.
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "the buffer's start check is not done yet; try again in a moment"})
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
