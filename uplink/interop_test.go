package uplink

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/edge-agent/edge-agent/internal/testkit"
	"github.com/edge-agent/edge-agent/uplink/hubops"
	"github.com/edge-agent/edge-agent/uplink/wire"
)

// newExtWANEnv is newWANEnv with an external nats-server as the hub: the
// in-process leaf (this repository's nats-server) reaches it through a
// wanfault proxy, and the env's hub connection is to the external hub.
func newExtWANEnv(t *testing.T, site string, hub *hubProcess) *wanEnv {
	t.Helper()
	w := &wanEnv{}
	var gate *Gate
	w.fwEnv = newFwEnv(t, site, fwEnvOpts{
		sharedHub: hub.env(t),
		remoteURL: proxyRemote(t, &w.proxy),
		leaf: func(o *server.Options) {
			// nats-server 2.9 advertises its leafnode address even with
			// leafnodes.no_advertise; without this the leaf's first redial
			// after a cut goes straight to the hub, around the proxy.
			o.LeafNode.Remotes[0].IgnoreDiscoveredServers = true
			gateRemote(t, &gate)(o)
		},
	})
	w.linkUp(t, gate, quickReconnect)
	return w
}

// The duplicate flag of an older hub's ack (its own spelling) is read too.
func TestInteropStockHubDuplicateAck(t *testing.T) {
	hub := startExtHub(t)
	w := newExtWANEnv(t, "store-dup", hub)
	f := checkDuplicateAck(t, w.fwEnv)
	if m := f.Status().Mode; m != ModePerMessage {
		t.Fatalf("mode %q against %s, want %q", m, hub.version, ModePerMessage)
	}
}

// TestInteropStockHub runs the steady flow and a WAN outage against the
// distribution's nats-server (Debian bookworm: 2.9) as the hub: fleets
// upgrade hubs and agents separately, so the agent must work with an older
// hub than the nats-server it embeds.
func TestInteropStockHub(t *testing.T) {
	hub := startExtHub(t)
	t.Logf("hub: %s", hub.version)
	w := newExtWANEnv(t, "store-interop", hub)
	fw := w.forwarder()
	stop := w.flow("telemetry.flow", 2*time.Millisecond)
	w.waitHubPast(100, 30*time.Second, "flow reaching the hub")
	d := w.restoreToAck(t, 2*time.Second)
	t.Logf("WAN restore -> first reading at the %s hub: %s", hub.version, d)
	if st := w.link.Status(); st.Reconnects < 1 || st.Hub != w.proxy.Addr() {
		t.Fatalf("link status after the outage = %+v, want reconnected through %s", st, w.proxy.Addr())
	}
	// A hub before 2.10 knows no leaf compression: status must say so, as
	// a metered link then carries every byte as it is.
	wantComp := server.CompressionS2Fast
	if strings.Contains(hub.version, "v2.9.") {
		wantComp = server.CompressionNotSupported
	}
	testkit.WaitFor(t, 5*time.Second, func() error {
		if w.link.Status().Compression != wantComp {
			return fmt.Errorf("still waiting for compression %s in link status", wantComp)
		}
		return nil
	})
	n := stop()
	w.waitHub(n, 60*time.Second, "every reading at the hub")
	w.checkExactlyOnce(w.hubMsgs(), "TELEMETRY", "telemetry.flow", 1, n)
	// 2.9 knows no fast batches: it acks each message as a plain publish,
	// and the forwarder goes on per message.
	wantMode := ModeBatch
	if strings.Contains(hub.version, "v2.9.") {
		wantMode = ModePerMessage
	}
	if st := fw.Status(); st.HubStream != "EDGE" || st.HubDomain != "hub" || st.Rejected != 0 || st.Mode != wantMode {
		t.Fatalf("forwarder status against %s (want mode %s): %+v", hub.version, wantMode, st)
	}

	// The fleet view (hub stream EDGE_STATUS: max_msgs_per_subject,
	// allow_direct; read with a last-per-subject ordered consumer) on the
	// same hub, fed by a heartbeat that crosses the leaf.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := hubops.EnsureStatusStream(ctx, w.hubJS, "edge"); err != nil {
		t.Fatalf("fleet status stream on %s: %v", hub.version, err)
	}
	hb, _ := json.Marshal(wire.Heartbeat{Schema: 1, Site: w.site})
	var rows []hubops.SiteView
	testkit.WaitFor(t, 15*time.Second, func() error {
		if err := w.leafNC.Publish(wire.StatusSubject("edge", w.site), hb); err != nil {
			t.Fatal(err)
		}
		var err error
		if rows, err = hubops.ReadFleet(ctx, w.hubJS, "edge"); err != nil {
			t.Fatalf("fleet view on %s: %v", hub.version, err)
		}
		if len(rows) != 1 {
			return errors.New("still waiting for the heartbeat in the fleet view")
		}
		return nil
	})
	if rows[0].Site != w.site || rows[0].Heartbeat.Site != w.site {
		t.Fatalf("fleet view row = %+v", rows[0])
	}
}
