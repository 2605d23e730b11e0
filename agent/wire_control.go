package agent

import (
	"context"
	"net"
	"net/http"
	"time"
)

// snapshotEvery is how often the status is saved to state.db, so that
// `edge-agent status` can say what the site looked like when the daemon
// died. Batched by state.db's own writer: no extra fsync per snapshot.
const snapshotEvery = 30 * time.Second

// StatusKey is the state.db record holding the last status snapshot.
const StatusKey = "status"

// controlPart owns the local control API, metrics and systemd notify.
type controlPart struct {
	notify      *notifier
	metricsAddr string
}

// setupControl starts the control socket, metrics and systemd notify. The
// socket and metrics listeners are opened here, so a bad path or a busy
// port is reported at start; each only degrades itself: the agent keeps
// collecting data without them.
func (a *Agent) setupControl(ctx context.Context, cfg *Config) error {
	cp := a.control()
	log := a.log.With("component", "control")

	if l, err := listenControl(cfg.ControlSocket); err != nil {
		log.Error("control socket unavailable: `edge-agent status` will not reach this agent", "err", err)
	} else {
		srv := &http.Server{Handler: a.controlHandler(), ReadHeaderTimeout: 5 * time.Second}
		a.addPart("control", func(ctx context.Context) error { return serveHTTP(ctx, srv, l) })
	}
	if cfg.MetricsListen != "" {
		if l, err := net.Listen("tcp", cfg.MetricsListen); err != nil {
			log.Error("metrics endpoint unavailable", "metrics_listen", cfg.MetricsListen, "err", err)
		} else {
			cp.metricsAddr = l.Addr().String()
			srv := &http.Server{Handler: a.metricsHandler(), ReadHeaderTimeout: 5 * time.Second}
			a.addPart("metrics", func(ctx context.Context) error { return serveHTTP(ctx, srv, l) })
		}
	}
	a.addPart("systemd", func(ctx context.Context) error { return cp.notify.run(ctx, a) })
	a.addPart("status-snapshot", a.snapshotLoop)
	return nil
}

// control returns the control part, creating it on first use: parts set
// up before it may already register with the watchdog (Agent.Progress).
// Setup is sequential, so no lock.
func (a *Agent) control() *controlPart {
	if a.ctl == nil {
		a.ctl = &controlPart{notify: newNotifier(a.log.With("component", "systemd"))}
	}
	return a.ctl
}

// snapshotLoop saves the status every snapshotEvery and once more at stop.
func (a *Agent) snapshotLoop(ctx context.Context) error {
	st := a.State()
	if st == nil {
		return nil
	}
	t := time.NewTicker(snapshotEvery)
	defer t.Stop()
	save := func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := st.PutJSON(StatusKey, a.Status(sctx)); err != nil {
			a.log.Warn("status snapshot not saved", "err", err)
		}
	}
	for {
		save()
		select {
		case <-ctx.Done():
			save()
			if h, ok := a.log.Handler().(*rateLimitHandler); ok {
				h.Flush(context.Background())
			}
			return nil
		case <-t.C:
		}
	}
}

// MetricsAddr is where /metrics listens ("" when disabled or unavailable);
// it resolves port 0.
func (a *Agent) MetricsAddr() string {
	if a.ctl == nil {
		return ""
	}
	return a.ctl.metricsAddr
}
