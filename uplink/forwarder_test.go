package uplink

import (
	"testing"
	"time"
)

func TestForwarderSteadyFlow(t *testing.T) {
	e := newFwEnv(t, "store-0042", fwEnvOpts{})
	e.leafUp()
	const nTele, nAlerts = 3000, 40
	e.publish("telemetry.ambient", nTele, []byte(`{"t":21.5}`))
	e.publish("alerts.door", nAlerts, []byte(`{"open":true}`))
	f := e.start(nil, WithWindow(64))
	fwWaitFor(t, 60*time.Second, "all readings at the hub", func() bool { return e.hubCount() == nTele+nAlerts })
	// Live readings keep flowing after the backlog.
	e.publish("telemetry.ambient", 10, []byte(`{"t":21.6}`))
	fwWaitFor(t, 30*time.Second, "live readings at the hub", func() bool { return e.hubCount() == nTele+nAlerts+10 })
	msgs := e.hubMsgs()
	e.checkExactlyOnce(msgs, "TELEMETRY", "telemetry.ambient", nTele+10)
	e.checkExactlyOnce(msgs, "ALERTS", "alerts.door", nAlerts)
	fwWaitFor(t, 10*time.Second, "cursors at the end", func() bool {
		return e.st.Cursor("TELEMETRY") == nTele+10 && e.st.Cursor("ALERTS") == nAlerts
	})
	st := f.Status()
	if st.HubStream != "EDGE" || st.HubDomain != "hub" {
		t.Fatalf("acks came from stream %q domain %q, want the hub's EDGE in domain hub", st.HubStream, st.HubDomain)
	}
	if st.Forwarded["TELEMETRY"] != nTele+10 || st.Forwarded["ALERTS"] != nAlerts || st.Rejected != 0 || st.LastAck.IsZero() {
		t.Fatalf("status = %+v", st)
	}
	// Alerts drain first: with the backlog already stored, every alert is
	// at the hub before the telemetry backlog ends.
	lastAlert, lastTele := 0, 0
	for i, m := range msgs {
		switch m.Headers().Get(HdrStream) {
		case "ALERTS":
			lastAlert = i
		case "TELEMETRY":
			lastTele = i
		}
	}
	if lastAlert > lastTele {
		t.Fatalf("last alert at hub position %d after the last telemetry at %d", lastAlert, lastTele)
	}
}
