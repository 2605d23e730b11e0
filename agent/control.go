package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"time"

	"github.com/edge-agent/edge-agent/uplink"
	"github.com/edge-agent/edge-agent/uplink/wire"
)

// ControlGroup may read the control socket besides root and the agent's
// user: technicians are put in it so `edge-agent status` works without sudo.
const ControlGroup = "edge-agent"

// listenControl opens the control socket. A leftover socket file from a
// crash is removed, but only after checking nothing answers on it: another
// agent (with another state_dir) may own the path.
func listenControl(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("control_socket %s: create directory: %w", path, err)
	}
	if err := notASocket(path); err != nil {
		return nil, fmt.Errorf("control_socket %s", err)
	}
	if _, err := os.Lstat(path); err == nil {
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("control_socket %s: another edge-agent is answering on it; give this one its own control_socket", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("control_socket %s: remove stale socket: %w", path, err)
		}
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("control_socket %s: %w", path, err)
	}
	// Chmod after listen: the umask decides the mode bind() creates.
	if err := os.Chmod(path, 0o660); err != nil {
		l.Close()
		return nil, fmt.Errorf("control_socket %s: chmod 0660: %w", path, err)
	}
	if g, err := user.LookupGroup(ControlGroup); err == nil {
		if gid, err := strconv.Atoi(g.Gid); err == nil {
			// Best effort: the agent's user may not be in the group (tests).
			_ = os.Chown(path, -1, gid)
		}
	}
	return l, nil
}

// notASocket refuses a path that exists and is not a socket: the stale
// socket removal in listenControl must never delete a file (an operator
// who pointed control_socket at the config itself would lose it).
func notASocket(path string) error {
	fi, err := os.Lstat(path)
	if err != nil || fi.Mode().Type() == os.ModeSocket {
		return nil
	}
	return fmt.Errorf("%s exists and is not a socket (%s); the agent replaces only its own stale socket: choose another path such as /run/edge-agent/agent.sock", path, fileKind(fi.Mode()))
}

func fileKind(m os.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m.IsRegular():
		return "a regular file"
	case m.Type() == os.ModeSymlink:
		return "a symbolic link"
	}
	return "mode " + m.Type().String()
}

// HealthResponse is GET /v1/health: the verdict without the details.
type HealthResponse struct {
	State    wire.HealthState `json:"state"`
	Code     int              `json:"code"`
	Warnings []Warning        `json:"warnings"`
}

// controlHandler serves the versioned local API. Paths are versioned so the
// CLI of a newer package can still talk to an older running daemon.
func (a *Agent) controlHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, a.Status(r.Context()))
	})
	mux.HandleFunc("GET /v1/config", a.serveConfigPath)
	mux.HandleFunc("GET /v1/health", func(w http.ResponseWriter, r *http.Request) {
		s := a.Status(r.Context())
		code, warnings := s.Health()
		httpCode := http.StatusOK
		if code == ExitDown {
			httpCode = http.StatusServiceUnavailable
		}
		writeJSON(w, httpCode, HealthResponse{State: StateName(code), Code: code, Warnings: warnings})
	})
	mux.HandleFunc("POST /v1/buffer/ack-loss", a.handleAckLoss)
	return mux
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	// Whatever a reason or hub address echoes, no URL credential leaves.
	_, _ = io.WriteString(w, uplink.RedactText(string(b))+"\n")
}

// serveHTTP runs srv on l until ctx ends, then shuts it down gracefully.
func serveHTTP(ctx context.Context, srv *http.Server, l net.Listener) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
