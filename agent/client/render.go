package client

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/edge-agent/edge-agent/agent"
	"github.com/edge-agent/edge-agent/internal/human"
	"github.com/edge-agent/edge-agent/sensors"
	"github.com/edge-agent/edge-agent/uplink"
	"github.com/edge-agent/edge-agent/uplink/wire"
)

// style decorates the text only on a terminal: piped into a ticket or a
// log, status must stay plain ASCII.
type style struct{ tty bool }

const (
	ansiRed    = "\x1b[31m"
	ansiYellow = "\x1b[33m"
	ansiGreen  = "\x1b[32m"
	ansiBold   = "\x1b[1m"
	ansiReset  = "\x1b[0m"
)

func (st style) color(c, s string) string {
	if !st.tty {
		return s
	}
	return c + s + ansiReset
}

// mark is the per-line verdict: a symbol on a terminal, a word otherwise.
func (st style) mark(sev agent.Severity) string {
	switch {
	case sev == agent.SevCritical && st.tty:
		return st.color(ansiRed, "✗")
	case sev == agent.SevCritical:
		return "CRIT"
	case sev == agent.SevWarning && st.tty:
		return st.color(ansiYellow, "!")
	case sev == agent.SevWarning:
		return "WARN"
	case st.tty:
		return st.color(ansiGreen, "✓")
	}
	return "ok"
}

func (st style) state(state wire.HealthState) string {
	word := strings.ToUpper(string(state))
	switch state {
	case wire.Healthy:
		return st.color(ansiGreen+ansiBold, word)
	case wire.Degraded:
		return st.color(ansiYellow+ansiBold, word)
	}
	return st.color(ansiRed+ansiBold, word)
}

// RenderStatus writes the technician's one-screen view. It is a pure
// function of its arguments (no clock, no environment), so golden files pin
// it down.
func RenderStatus(w io.Writer, s agent.Status, now time.Time, tty bool) {
	st := style{tty}
	p := func(f string, a ...any) { fmt.Fprintf(w, f, a...) }
	code, warnings := s.Health()

	up := ""
	if s.Running && !s.Started.IsZero() {
		up = "  up " + human.Age(now.Sub(s.Started))
	}
	domain := ""
	if s.Domain != "" && s.Domain != s.Site {
		domain = " (domain " + s.Domain + ")"
	}
	p("edge-agent %s (%s)%s  site %s%s\n", s.Version, shortCommit(s.Commit), up, s.Site, domain)
	switch n := len(warnings); n {
	case 0:
		p("%s\n", st.state(agent.StateName(code)))
	case 1:
		p("%s: 1 warning\n", st.state(agent.StateName(code)))
	default:
		p("%s: %d warnings\n", st.state(agent.StateName(code)), n)
	}
	for _, wa := range warnings {
		p("  %-4s %s\n", st.mark(wa.Severity), wa.Message)
		if wa.Fix != "" {
			p("       fix: %s\n", wa.Fix)
		}
	}

	renderUplink(p, s, now)
	renderBacklog(p, s, now)
	renderSensors(p, st, s, now)

	store := s.Store
	line := human.Bytes(store.Bytes) + " stored"
	if store.MaxBytes > 0 {
		line += " (budget " + human.Bytes(store.MaxBytes) + ")"
	}
	if store.DiskTotal > 0 {
		line += fmt.Sprintf(", disk %s free of %s", human.Bytes(store.DiskFree), human.Bytes(store.DiskTotal))
	}
	if store.ReadOnly {
		line += ", READ-ONLY"
	}
	p("%-9s %s, sync %s\n", "store", line, store.Sync)
	clock := string(s.Clock.State)
	if s.Clock.Error != "" {
		clock += " (" + s.Clock.Error + ")"
	}
	if o := s.Clock.HubOffset; o != nil {
		clock += fmt.Sprintf(", %s the hub's (measured %s ago)", human.Offset(time.Duration(*o*float64(time.Second))), human.Age(now.Sub(s.Clock.HubMeasured)))
	}
	p("%-9s %s\n", "clock", clock)
	if s.RemoteConfig != nil {
		p("%-9s %s\n", "config", s.RemoteConfig.Line())
	}
	if s.Running {
		p("%-9s %d local\n", "clients", s.Clients)
	}
}

func renderUplink(p func(string, ...any), s agent.Status, now time.Time) {
	const k = "uplink"
	u := s.Uplink
	switch {
	case u == nil:
		p("%-9s standalone (no uplink configured; readings stay local)\n", k)
		return
	case u.Link == nil:
		p("%-9s starting\n", k)
	default:
		l := u.Link
		line := string(l.State)
		if !l.Since.IsZero() {
			line += " for " + human.Age(now.Sub(l.Since))
		}
		if l.Hub != "" {
			line += " (" + l.Hub + ")"
		}
		if l.State != uplink.StateConnected {
			if l.Reason != "" {
				line += ": " + l.Reason
			}
			line += "; " + outageLine(l, now)
		} else {
			if l.RTT > 0 {
				rtt := l.RTT.Round(time.Millisecond).String()
				if l.RTT < time.Millisecond/2 {
					rtt = "<1ms" // a hub on the LAN: "0s" would read as no answer
				}
				line += ", rtt " + rtt
			}
			switch l.Compression {
			case "":
			case server.CompressionNotSupported:
				line += ", uncompressed: the hub's nats-server is older than 2.10"
			default:
				line += ", compression " + l.Compression
			}
			if l.SentBytes > 0 {
				line += ", " + human.Bytes(uint64(l.SentBytes)) + " sent"
			}
		}
		p("%-9s %s\n", k, line)
	}
	if f := u.Forwarder; f != nil {
		var total uint64
		for _, n := range f.Forwarded {
			total += n
		}
		line := fmt.Sprintf("forwarded %d this boot, %.1f msg/s, %d in flight", total, f.RatePerSec, f.InFlight)
		if f.Mode != "" {
			line += " (" + f.Mode + ")"
		}
		if !f.LastAck.IsZero() {
			line += ", last ack " + human.Age(now.Sub(f.LastAck)) + " ago"
		}
		if f.Rejected > 0 {
			line += fmt.Sprintf(", %d never forwardable (last: %s)", f.Rejected, f.LastRejected)
		}
		if f.DroppedDuplicate > 0 {
			line += fmt.Sprintf(", %d NEW readings dropped by the hub as duplicates (last: %s)", f.DroppedDuplicate, f.LastDuplicate)
		}
		if f.HubBusy > 0 {
			line += fmt.Sprintf(", hub overloaded %d× (window now %d)", f.HubBusy, f.Window)
		}
		if f.HeldUntil.After(now) {
			// Rounded up: "starts in 0s" would read as a stuck forwarder.
			line += ", telemetry starts in " + human.Age(f.HeldUntil.Sub(now)+time.Second-1) + " (drain ramp after a hub outage)"
		}
		p("%-9s %s\n", "", line)
	}
}

// outageLine is the down link's times: when it was last up, how many
// attempts failed since, and when the next one comes.
func outageLine(l *uplink.LinkStatus, now time.Time) string {
	line := "never connected this boot"
	if !l.LastUp.IsZero() {
		line = "last up " + human.Age(now.Sub(l.LastUp)) + " ago"
	}
	switch l.Attempts {
	case 0:
	case 1:
		line += ", 1 attempt failed"
	default:
		line += fmt.Sprintf(", %d attempts failed", l.Attempts)
	}
	switch {
	case !l.NextAttempt.IsZero():
		// Rounded up: "next in 0s" would read as a stuck link.
		line += ", next in " + human.Age(l.NextAttempt.Sub(now)+time.Second-1)
	case l.State == uplink.StateConnecting:
		line += ", attempt in progress"
	}
	return line
}

func renderBacklog(p func(string, ...any), s agent.Status, now time.Time) {
	key := "backlog"
	if len(s.Backlog) == 0 {
		p("%-9s unknown\n", key)
		return
	}
	linkUp := s.Uplink != nil && s.Uplink.Link != nil && s.Uplink.Link.State == uplink.StateConnected
	for _, l := range s.Backlog {
		line := fmt.Sprintf("%-10s %d msgs, %s", l.Stream, l.Messages, human.Bytes(l.Bytes))
		if l.Messages > 0 {
			if !l.Oldest.IsZero() {
				line += ", oldest " + human.Age(now.Sub(l.Oldest))
			}
			switch {
			case l.Drain > 0:
				line += ", drains in ~" + human.Age(l.Drain)
			case s.Uplink != nil && !linkUp:
				line += ", waiting for uplink"
			}
		}
		if l.Evicted > 0 {
			line += fmt.Sprintf(", %d evicted unforwarded", l.Evicted)
		}
		if l.Lost > 0 {
			line += fmt.Sprintf(", %d lost to damage", l.Lost)
		}
		p("%-9s %s\n", key, line)
		key = ""
	}
}

func renderSensors(p func(string, ...any), st style, s agent.Status, now time.Time) {
	ok := 0
	for _, se := range s.Sensors {
		if se.OK {
			ok++
		}
	}
	if len(s.Sensors) == 0 {
		p("%-9s none configured\n", "sensors")
		return
	}
	p("%-9s %d/%d ok\n", "sensors", ok, len(s.Sensors))
	width := 0
	for _, se := range s.Sensors {
		width = max(width, len(se.Name))
	}
	for _, se := range s.Sensors {
		var sev agent.Severity
		if !se.OK {
			sev = agent.SevWarning
		}
		line := fmt.Sprintf("  %-4s %-*s  %-8s %s", st.mark(sev), width, se.Name, se.Driver, fmtValues(se.LastValues))
		if !se.LastRead.IsZero() {
			line += " (" + human.Age(now.Sub(se.LastRead)) + " ago)"
		}
		if se.LastError != "" {
			line += fmt.Sprintf("  error: %s (%d errors)", se.LastError, se.Errors)
		}
		for _, k := range slices.Sorted(maps.Keys(se.Events)) {
			line += fmt.Sprintf("  %s=%d", k, se.Events[k])
		}
		if se.Writes > 0 {
			line += fmt.Sprintf("  writes=%d (%d refused or failed)", se.Writes, se.WriteErrors)
		}
		p("%s\n", strings.TrimRight(line, " "))
	}
}

func fmtValues(v map[string]sensors.Value) string {
	if len(v) == 0 {
		return "-"
	}
	parts := make([]string, 0, len(v))
	for _, k := range slices.Sorted(maps.Keys(v)) {
		parts = append(parts, fmt.Sprintf("%s=%g%s", k, v[k].V, v[k].Unit))
	}
	return strings.Join(parts, " ")
}

func shortCommit(c string) string {
	if len(c) > 7 {
		return c[:7]
	}
	return c
}

// RenderNotRunning is what status prints when nothing answers on the
// socket: say so, the commands that show why, and what state.db last
// recorded (last may be nil when there is no state.db to read).
func RenderNotRunning(w io.Writer, socket string, cause error, last *agent.Status, lastErr error, now time.Time, tty bool) {
	st := style{tty}
	fmt.Fprintf(w, "%s edge-agent is not running (nothing answers on %s: %v)\n", st.mark(agent.SevCritical), socket, cause)
	fmt.Fprintf(w, "  why:    systemctl status edge-agent\n          journalctl -u edge-agent -n 50\n  start:  systemctl start edge-agent\n")
	switch {
	case last == nil && lastErr != nil:
		fmt.Fprintf(w, "no recorded status: %v\n", lastErr)
	case last == nil:
		fmt.Fprintf(w, "no recorded status\n")
	default:
		fmt.Fprintf(w, "last recorded status, %s ago (%s):\n", human.Age(now.Sub(last.Time)), last.Time.UTC().Format(time.RFC3339))
		s := *last
		s.Running = false
		RenderStatus(w, s, last.Time, tty)
	}
}
