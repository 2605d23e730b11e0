package agent

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"time"

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
// damage is measured against) and creates or reconciles the streams: from
// then on local publishes are stored. The check against state.db, which
// reports what a crash or a damaged file took and draws the message-id
// epochs, runs right after the agent is ready, on the watcher's part; what
// needs its result waits for it (afterCheck).
func (a *Agent) setupBuffer(ctx context.Context, cfg *Config) error {
	st, err := a.openedState()
	if err != nil {
		return err
	}
	log := a.log.With("component", "buffer")
	a.buf = &bufferPart{state: st, clock: newAgentClock(a.log.With("component", "clock"))}
	for _, name := range buffer.Lanes {
		if err := st.RecordLost(name, a.salvaged); err != nil {
			return err
		}
	}
	opening, err := buffer.CreateStreams(ctx, a.js, st, cfg.Buffer, log)
	if err != nil {
		return err
	}
	if a.buf.watcher, err = buffer.NewWatcher(a.srv, a.js, st, cfg.Buffer, log); err != nil {
		return err
	}
	a.addPart("state", st.Run)
	a.addPart("buffer-watch", func(ctx context.Context) error {
		if a.holdCheck != nil {
			a.holdCheck(ctx)
		}
		// Before READY, systemd's start timeout bounded the check; a
		// check that hangs now stops the agent, and systemd restarts it.
		cctx, cancel := context.WithTimeout(ctx, checkTimeout)
		_, err := opening.Check(cctx, a.started)
		cancel()
		if err != nil {
			return err
		}
		a.buf.watcher.Check(ctx)
		close(a.checked)
		return a.buf.watcher.Run(ctx)
	})
	return a.setupAge(cfg)
}

// checkTimeout bounds the start's stream check: normally milliseconds,
// a handful of JetStream requests and one state.db commit.
const checkTimeout = time.Minute

// afterCheck is run once the start's stream check is done: it reads
// cursors, message ids or age checkpoints the check may still change.
func (a *Agent) afterCheck(run func(context.Context) error) func(context.Context) error {
	return func(ctx context.Context) error {
		select {
		case <-a.checked:
			return run(ctx)
		case <-ctx.Done():
			return nil
		}
	}
}

// checking reports whether the start's stream check is still running.
func (a *Agent) checking() bool {
	select {
	case <-a.checked:
		return false
	default:
		return true
	}
}

// setupAge runs the ager after the stream check, which clamps its
// checkpoints to what the streams still hold (the constructor reads only
// the last checkpoint's times).
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
	a.addPart("buffer-age", a.afterCheck(ager.Run))
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
