package agent

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"

	"github.com/edge-agent/edge-agent/uplink"
)

// How the watchdog decides a loop is wedged. A loop is stalled when its
// progress counter has not moved for stallIntervals of its own interval
// (and never less than minStallWindow, so a slow fsync on a busy SD card is
// not mistaken for a hang). One withheld ping is harmless: systemd acts only
// after WatchdogSec without any.
const (
	stallIntervals = 3
	minStallWindow = 2 * time.Second
	// forwarderStallWindow: with a backlog and the link up, a live forwarder
	// gets an ack, a stall or an error within this.
	forwarderStallWindow = 5 * time.Minute
	statusEvery          = 5 * time.Second
)

// loopProgress is one long-lived loop as the watchdog sees it: a counter
// that moves whenever the loop completes an iteration, and whether it is
// expected to move right now.
type loopProgress struct {
	name    string
	counter uint64
	expect  bool
	within  time.Duration
}

// progress remembers when each loop's counter last moved. Loops do not call
// into it: the watchdog reads the counters the parts already publish for
// status (sensor published+errors, forwarder acks+stalls), so sensors and
// uplink stay free of agent imports and a loop cannot "beat" while wedged
// elsewhere.
type progress struct {
	mu   sync.Mutex
	last map[string]progressMark
}

type progressMark struct {
	counter uint64
	at      time.Time
}

// stalled records the loops' counters at now and returns the loops that are
// expected to move but have not within their window, sorted.
func (p *progress) stalled(now time.Time, loops []loopProgress) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.last == nil {
		p.last = map[string]progressMark{}
	}
	var out []string
	seen := map[string]bool{}
	for _, l := range loops {
		seen[l.name] = true
		m, ok := p.last[l.name]
		if !ok || m.counter != l.counter || !l.expect {
			// Not expected to move (idle forwarder): the clock restarts when
			// work appears.
			p.last[l.name] = progressMark{counter: l.counter, at: now}
			continue
		}
		if now.Sub(m.at) > max(l.within, minStallWindow) {
			out = append(out, fmt.Sprintf("%s (no progress for %s)", l.name, fmtAge(now.Sub(m.at))))
		}
	}
	for k := range p.last {
		if !seen[k] {
			delete(p.last, k) // removed by a reload
		}
	}
	slices.Sort(out)
	return out
}

// loops lists the agent's long-lived loops the watchdog watches: every
// sampler loop and, while it has work and a link, the forwarder.
func (a *Agent) loops(s Status) []loopProgress {
	var out []loopProgress
	for _, se := range s.Sensors {
		out = append(out, loopProgress{
			name: "sensor " + se.Name, counter: se.Published + se.Errors,
			expect: true, within: stallIntervals * se.Interval,
		})
	}
	if u := s.Uplink; u != nil && u.Forwarder != nil {
		f := u.Forwarder
		c := f.Stalls + f.Rejected + uint64(f.LastAck.UnixNano())
		for _, n := range f.Forwarded {
			c += n
		}
		var backlog uint64
		for _, l := range s.Backlog {
			backlog += l.Messages
		}
		linkUp := u.Link != nil && u.Link.State == uplink.StateConnected
		out = append(out, loopProgress{name: "forwarder", counter: c, expect: linkUp && backlog > 0, within: forwarderStallWindow})
	}
	return out
}

// notifier speaks sd_notify: READY, STATUS, WATCHDOG and STOPPING. Without
// NOTIFY_SOCKET (not under systemd, tests) every send is a no-op.
type notifier struct {
	log      *slog.Logger
	watchdog time.Duration // 0: systemd does not watch us
	progress progress
	withheld atomic.Uint64 // watchdog pings skipped because a loop stalled
}

func newNotifier(log *slog.Logger) *notifier {
	n := &notifier{log: log}
	wd, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		log.Warn("systemd watchdog settings unreadable; not pinging it", "err", err)
	}
	n.watchdog = wd
	return n
}

func (n *notifier) send(state string) {
	if _, err := daemon.SdNotify(false, state); err != nil {
		n.log.Warn("sd_notify failed", "state", strings.SplitN(state, "=", 2)[0], "err", err)
	}
}

// run sends READY once the agent is ready, then keeps STATUS current and
// pings the watchdog while every loop progresses; STOPPING when ctx ends.
func (n *notifier) run(ctx context.Context, a *Agent) error {
	select {
	case <-a.Ready():
	case <-ctx.Done():
		return nil
	}
	n.send(daemon.SdNotifyReady)
	tick := statusEvery
	if n.watchdog > 0 {
		// sd_watchdog_enabled(3): ping at half the timeout.
		tick = min(tick, n.watchdog/2)
	}
	t := time.NewTicker(tick)
	defer t.Stop()
	var lastStatus, lastStalled string
	var lastStatusAt time.Time
	for {
		sctx, cancel := context.WithTimeout(ctx, statusEvery)
		s := a.Status(sctx)
		cancel()
		now := time.Now()
		stalled := n.progress.stalled(now, a.loops(s))
		line := statusLine(s)
		if len(stalled) > 0 {
			line = "watchdog withheld: stalled " + strings.Join(stalled, ", ")
		}
		if line != lastStatus && (now.Sub(lastStatusAt) >= statusEvery || len(stalled) > 0) {
			n.send("STATUS=" + line)
			lastStatus, lastStatusAt = line, now
		}
		if ls := strings.Join(stalled, ", "); ls != lastStalled {
			if ls != "" {
				n.log.Error("loop stalled; withholding the systemd watchdog ping so systemd restarts the agent", "loops", ls)
			} else if lastStalled != "" {
				n.log.Info("stalled loops recovered; watchdog pings resume")
			}
			lastStalled = ls
		}
		if n.watchdog > 0 {
			if len(stalled) == 0 {
				n.send(daemon.SdNotifyWatchdog)
			} else {
				n.withheld.Add(1)
			}
		}
		select {
		case <-ctx.Done():
			n.send(daemon.SdNotifyStopping)
			return nil
		case <-t.C:
		}
	}
}

// statusLine is systemd's STATUS=: what `systemctl status` shows in one line.
func statusLine(s Status) string {
	var parts []string
	switch {
	case s.Uplink == nil:
		parts = append(parts, "standalone")
	case s.Uplink.Link == nil:
		parts = append(parts, "uplink starting")
	case s.Uplink.Link.State == uplink.StateConnected:
		parts = append(parts, "uplink connected")
	default:
		l := "uplink " + s.Uplink.Link.State
		if s.Uplink.Link.Reason != "" {
			l += " (" + s.Uplink.Link.Reason + ")"
		}
		parts = append(parts, l)
	}
	var backlog uint64
	for _, l := range s.Backlog {
		backlog += l.Messages
	}
	parts = append(parts, fmt.Sprintf("backlog %d", backlog))
	ok := 0
	for _, se := range s.Sensors {
		if se.OK {
			ok++
		}
	}
	parts = append(parts, fmt.Sprintf("%d/%d sensors ok", ok, len(s.Sensors)))
	if _, w := s.Health(); len(w) > 0 {
		parts = append(parts, w[0].Message)
	}
	return strings.Join(parts, ", ")
}
