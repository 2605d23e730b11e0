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

// How the watchdog decides a loop is wedged: its progress has not moved in
// its window, never less than minStallWindow, so a slow fsync on a busy SD
// card is not mistaken for a hang. One withheld ping is harmless: systemd
// acts only after WatchdogSec without any.
const (
	minStallWindow = 2 * time.Second
	// forwarderStallWindow: with a backlog and the link up, a live forwarder
	// gets an ack, a stall or an error within this.
	forwarderStallWindow = 5 * time.Minute
	statusEvery          = 5 * time.Second
)

// loopProgress is one long-lived loop as the watchdog sees it: a counter
// that moves whenever the loop completes an iteration, and whether it is
// expected to move right now. A loop is stalled when its counter has not
// moved for within, or (if due is set) is still unchanged past due.
type loopProgress struct {
	name    string
	counter uint64
	expect  bool
	within  time.Duration
	due     time.Time
}

// progress remembers when each loop's counter last moved. Most loops do
// not call into it: the watchdog reads what the parts already publish for
// status (a sensor's next scheduled read, the forwarder's acks and stalls),
// so sensors and uplink stay free of agent imports. Loops without such a
// status register a beat with Agent.Progress.
type progress struct {
	mu    sync.Mutex
	last  map[string]progressMark
	beats map[string]*beat
}

type beat struct {
	n      atomic.Uint64
	within time.Duration
}

// Progress registers a long-lived loop with the systemd watchdog and
// returns the func the loop calls once per iteration. Call it during setup. If it is not called
// for longer than within (at least 2s), the watchdog ping is withheld and
// systemd restarts the agent after WatchdogSec. Parts get it as a plain
// func(), so they need no agent import.
func (a *Agent) Progress(name string, within time.Duration) func() {
	p := &a.control().notify.progress
	b := &beat{within: within}
	p.mu.Lock()
	if p.beats == nil {
		p.beats = map[string]*beat{}
	}
	p.beats[name] = b
	p.mu.Unlock()
	return func() { b.n.Add(1) }
}

func (p *progress) registered() []loopProgress {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]loopProgress, 0, len(p.beats))
	for name, b := range p.beats {
		out = append(out, loopProgress{name: name, counter: b.n.Load(), expect: true, within: b.within})
	}
	return out
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
		late := l.within > 0 && now.Sub(m.at) > max(l.within, minStallWindow) ||
			!l.due.IsZero() && now.Sub(l.due) > minStallWindow
		if late {
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
	out := a.control().notify.progress.registered()
	for _, se := range s.Sensors {
		// Each attempt, good or bad, schedules the next: a loop past its
		// next read plus the read timeout is stuck, whatever the driver does.
		due := se.NextRead
		if due.IsZero() {
			due = s.Started.Add(se.Interval)
		}
		out = append(out, loopProgress{
			name: "sensor " + se.Name, counter: uint64(se.NextRead.UnixNano()) + se.Errors + se.Published,
			expect: true, due: due.Add(se.Timeout),
		})
	}
	if u := s.Uplink; u != nil && u.Forwarder != nil {
		f := u.Forwarder
		c := f.Stalls + f.Rejected + f.DroppedDuplicate + uint64(f.LastAck.UnixNano())
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
		l := "uplink " + string(s.Uplink.Link.State)
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
