// Package client is the edge-agent command's side of the daemon's control
// API: it fetches what the daemon serves on its control socket and renders
// it (status, doctor's checks) for a technician. The daemon (package agent)
// never imports it.
package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"

	"github.com/edge-agent/edge-agent/agent"
)

// ErrNotRunning means nothing answered on the control socket.
var ErrNotRunning = errors.New("edge-agent is not running")

// FetchStatus asks the daemon behind socket for its status. A socket that
// does not exist or refuses the connection wraps ErrNotRunning.
func FetchStatus(ctx context.Context, socket string) (agent.Status, error) {
	var s agent.Status
	return s, controlGet(ctx, socket, "/v1/status", &s)
}

// controlGet decodes the JSON answer of GET path on the control socket.
func controlGet(ctx context.Context, socket, path string, v any) error {
	return controlDo(ctx, socket, http.MethodGet, path, v)
}

// controlDo decodes the JSON answer of method path on the control socket.
func controlDo(ctx context.Context, socket, method, path string, v any) error {
	c := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			c, err := d.DialContext(ctx, "unix", socket)
			if err != nil {
				return nil, fmt.Errorf("%w: %w", ErrNotRunning, err)
			}
			return c, nil
		},
	}}
	defer c.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, method, "http://edge-agent"+path, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("control socket %s: %w", socket, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("control socket %s: %s: %s", socket, resp.Status, b)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("control socket %s: decode %s: %w", socket, path, err)
	}
	return nil
}

// AckLoss asks the daemon behind socket to clear its recorded losses.
func AckLoss(ctx context.Context, socket string) (agent.AckLossResponse, error) {
	var r agent.AckLossResponse
	return r, controlDo(ctx, socket, http.MethodPost, "/v1/buffer/ack-loss", &r)
}

// FetchConfigPath asks the agent behind socket which config it runs with.
// Nothing answering wraps ErrNotRunning.
func FetchConfigPath(ctx context.Context, socket string) (string, error) {
	var ci agent.ConfigInfo
	err := controlGet(ctx, socket, "/v1/config", &ci)
	return ci.Path, err
}
