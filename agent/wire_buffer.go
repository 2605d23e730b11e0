package agent

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"

	"github.com/edge-agent/edge-agent/buffer"
)

// bufferPart owns the local streams, state.db, the store watcher, the
// ager (buffer.max_age) and the agent's clock it runs on.
type bufferPart struct {
	state   *buffer.State
	watcher *buffer.Watcher
	clock   *agentClock
	ager    *buffer.Ager // nil with buffer.max_age 0
}

// openState opens state.db on a goroutine of its own while the embedded
// server starts: neither needs the other, and the salvage pass, its only
// other reader, is done. setupBuffer takes it; closeBuffer closes it,
// whether or not setup got that far.
func (a *Agent) openState(cfg *Config) {
	a.openedState = sync.OnceValues(func() (*buffer.State, error) {
		return buffer.OpenState(filepath.Join(cfg.StateDir, "state.db"), a.log.With("component", "state"))
	})
	go a.openedState()
}

// setupBuffer takes state.db first (its last known stream extents are what
// damage is measured against), then creates or reconciles the streams and
// reports what a crash or a damaged file took.
func (a *Agent) setupBuffer(ctx context.Context, cfg *Config) error {
	st, err := a.openedState()
	if err != nil {
		return err
	}
	a.buf = &bufferPart{state: st, clock: newAgentClock(a.log.With("component", "clock"))}
	for _, name := range buffer.Lanes {
		if err := st.RecordLost(name, a.salvaged); err != nil {
			return err
		}
	}
	if _, err := buffer.OpenStreams(ctx, a.js, st, cfg.Buffer, a.started, a.log.With("component", "buffer")); err != nil {
		return err
	}
	if a.buf.watcher, err = buffer.NewWatcher(a.srv, a.js, st, cfg.Buffer, a.log.With("component", "buffer")); err != nil {
		return err
	}
	a.buf.watcher.Check(ctx)
	a.addPart("state", st.Run)
	a.addPart("buffer-watch", a.buf.watcher.Run)
	return a.setupAge(cfg)
}

// setupAge starts the ager after OpenStreams, whose check clamped its
// checkpoints to what the streams still hold.
func (a *Agent) setupAge(cfg *Config) error {
	log := a.log.With("component", "buffer")
	if cfg.Buffer.MaxAge <= 0 {
		log.Info("buffer.max_age is 0: no age limit, buffer.max_bytes alone bounds the buffer")
		return nil
	}
	ager, err := buffer.NewAger(a.js, a.buf.state, cfg.Buffer, buffer.AgerOptions{Clock: a.buf.clock, Log: log})
	if err != nil {
		return err
	}
	a.buf.ager = ager
	a.addPart("buffer-age", ager.Run)
	return nil
}

// closeBuffer runs after every part stopped (or setup failed), so the last
// cursor and sensor writes are committed before the file closes.
func (a *Agent) closeBuffer() {
	if a.openedState == nil {
		return
	}
	st, err := a.openedState()
	if err != nil {
		return
	}
	if err := st.Close(); err != nil {
		a.log.Error("closing state.db", "err", err)
	}
}

// State is state.db: cursors for the forwarder, sensor records, link
// history. Nil before setup.
func (a *Agent) State() *buffer.State {
	if a.buf == nil {
		return nil
	}
	return a.buf.state
}

// BufferStats reports the local streams for status and metrics.
func (a *Agent) BufferStats(ctx context.Context) ([]buffer.LaneStats, error) {
	if a.buf == nil {
		return nil, fmt.Errorf("buffer not set up yet")
	}
	return buffer.Stats(ctx, a.js, a.buf.state)
}

// BufferHealth is the store's condition as of the watcher's last check
// (every buffer.WatchInterval): disk full, JetStream disabled, write errors,
// persist_mode async streams, recoveries this boot.
func (a *Agent) BufferHealth() buffer.Health {
	if a.buf == nil || a.buf.watcher == nil {
		return buffer.Health{}
	}
	return a.buf.watcher.Health()
}
