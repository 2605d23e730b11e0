package uplink

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/edge-agent/edge-agent/internal/testkit"
	"github.com/edge-agent/edge-agent/uplink/hubops"
)

// hubFromDocs loads testdata/hub.conf, the hub config the README shows,
// on free ports and a temporary store.
func hubFromDocs(t *testing.T) *server.Options {
	t.Helper()
	text, err := os.ReadFile("testdata/hub.conf")
	if err != nil {
		t.Fatal(err)
	}
	conf := strings.NewReplacer("port: 4222", "port: -1", "port: 7422", "port: -1", "/var/lib/nats", t.TempDir()).Replace(string(text))
	path := filepath.Join(t.TempDir(), "hub.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	o, err := server.ProcessConfigFile(path)
	if err != nil {
		t.Fatalf("documented hub config rejected: %v", err)
	}
	o.Host, o.LeafNode.Host, o.NoLog, o.NoSigs = "127.0.0.1", "127.0.0.1", true, true
	return o
}

// docsEnv runs site against the documented hub, authenticating as user.
func docsEnv(t *testing.T, site, user string) *fwEnv {
	return newFwEnv(t, site, fwEnvOpts{
		hubOpts:  hubFromDocs(t),
		leafUser: user, leafPassword: user + "-secret",
		hubUser: "ops", hubPassword: "ops-secret",
	})
}

func TestDocumentedHubConfig(t *testing.T) {
	text, err := os.ReadFile("testdata/hub.conf")
	if err != nil {
		t.Fatal(err)
	}
	flat := strings.Join(strings.Fields(string(text)), " ")
	for _, site := range []string{"store-0042", "store-0043"} {
		if want := strings.Join(strings.Fields(hubops.HubLeafUser("edge", site, site+"-secret")), " "); !strings.Contains(flat, want) {
			t.Fatalf("testdata/hub.conf has drifted from HubLeafUser for %s:\nwant %s", site, want)
		}
	}

	t.Run("site forwards and answers through its own user", func(t *testing.T) {
		e := docsEnv(t, "store-0042", "store-0042")
		e.leafUp()
		e.publish("telemetry.ambient", 500, []byte(`{"t":4.1}`))
		e.publish("alerts.coldroom", 3, []byte(`{"t":9}`))
		f := e.start(nil)
		startDownlink(t, f, func(context.Context) any { return "ok" })
		e.waitHub(503, 60*time.Second, "readings at the hub")
		msgs := e.hubMsgs()
		e.checkExactlyOnce(msgs, "TELEMETRY", "telemetry.ambient", 1, 500)
		e.checkExactlyOnce(msgs, "ALERTS", "alerts.coldroom", 1, 3)
		acc, err := e.hub.LookupAccount("EDGE")
		if err != nil {
			t.Fatal(err)
		}
		testkit.WaitFor(t, 10*time.Second, func() error {
			if !acc.SubscriptionInterest("edge.store-0042.agent.ping") {
				return errors.New("still waiting for downlink interest at the hub")
			}
			return nil
		})
		if _, err := e.hubNC.Request("edge.store-0042.agent.ping", nil, 5*time.Second); err != nil {
			t.Fatalf("agent.ping through the documented config: %v", err)
		}
		if _, err := e.hubNC.Request("$JS.store-0042.API.STREAM.INFO.TELEMETRY", nil, 5*time.Second); err != nil {
			t.Fatalf("site JetStream API through the documented config: %v", err)
		}
	})

	t.Run("a site cannot write another site's subjects", func(t *testing.T) {
		// A cloned device: site id store-0043, store-0042's credentials.
		e := docsEnv(t, "store-0043", "store-0042")
		e.leafUp()
		e.publish("telemetry.ambient", 5, []byte("x"))
		f := e.start(nil)
		testkit.WaitFor(t, 20*time.Second, func() error {
			if f.Status().ReasonClass != ReasonPermission {
				return errors.New("still waiting for permission reason")
			}
			return nil
		})
		if n := e.hubCount(); n != 0 {
			t.Fatalf("hub stored %d messages of the wrong site", n)
		}
	})
}
