package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/edge-agent/edge-agent/internal/testkit"
)

func leafUp(t *testing.T, hub *server.Server, a *testAgent) {
	t.Helper()
	testkit.WaitFor(t, 15*time.Second, func() error {
		if !(hub.NumLeafNodes() == 1 && a.Server().NumLeafNodes() == 1) {
			return errors.New("still waiting for leaf connection")
		}
		return nil
	})
}

// interest waits until subject has subscribers as seen from server s, so a
// publish is not lost to not-yet-propagated interest.
func interest(t *testing.T, s *server.Server, subject string) {
	t.Helper()
	testkit.WaitFor(t, 10*time.Second, func() error {
		if !s.GlobalAccount().SubscriptionInterest(subject) {
			return fmt.Errorf("still waiting for interest in %s", subject)
		}
		return nil
	})
}

func TestLeafNode(t *testing.T) {
	hub := testkit.RunServer(t, testkit.HubOpts(t))
	a := startAgent(t, fmt.Sprintf("site: store-7\nuplink:\n  hub_urls: [%s]\n", leafURL(t, hub, "nats")))
	leafUp(t, hub, a)
	hc := connect(t, hub.ClientURL())
	lc := connect(t, a.ClientURL())

	t.Run("allowed subject crosses, local streams do not", func(t *testing.T) {
		// Subscribed before orders.>: interest crosses the leaf in order,
		// so once orders.1 has interest at the site, these would too.
		tele, _ := hc.SubscribeSync("telemetry.>")
		alerts, _ := hc.SubscribeSync("alerts.>")
		own, _ := hc.SubscribeSync("edge-agent.>")
		orders, _ := hc.SubscribeSync("orders.>")
		hc.Flush()
		interest(t, a.Server(), "orders.1")
		lc.Publish("telemetry.x", []byte("raw"))
		lc.Publish("alerts.x", []byte("raw"))
		lc.Publish("edge-agent.cursor.TELEMETRY", []byte("7"))
		lc.Publish("orders.1", []byte("o1"))
		lc.Flush()
		m, err := orders.NextMsg(5 * time.Second)
		if err != nil || string(m.Data) != "o1" {
			t.Fatalf("orders.1 did not reach the hub: %v", err)
		}
		// Published before orders.1 on the same connection: had they crossed
		// they would already be here.
		for _, s := range []*nats.Subscription{tele, alerts, own} {
			if m, err := s.NextMsg(200 * time.Millisecond); err == nil {
				t.Errorf("denied subject %s crossed the leaf", m.Subject)
			}
		}
	})

	t.Run("hub reaches the site JetStream domain", func(t *testing.T) {
		resp, err := hc.Request("$JS.store-7.API.INFO", nil, 5*time.Second)
		if err != nil {
			t.Fatalf("$JS.store-7.API.INFO from the hub: %v", err)
		}
		var info struct {
			Domain string `json:"domain"`
			Error  any    `json:"error"`
		}
		if err := json.Unmarshal(resp.Data, &info); err != nil || info.Domain != "store-7" || info.Error != nil {
			t.Fatalf("account info = %s", resp.Data)
		}
	})

	t.Run("queue group serves the local member first", func(t *testing.T) {
		hc.QueueSubscribe("svc.price", "workers", func(m *nats.Msg) { m.Respond([]byte("hub")) })
		hc.Flush()
		interest(t, a.Server(), "svc.price") // the hub member is visible from the leaf
		lc.QueueSubscribe("svc.price", "workers", func(m *nats.Msg) { m.Respond([]byte("leaf")) })
		lc.Flush()
		interest(t, hub, "svc.price")
		for i := range 20 {
			r, err := lc.Request("svc.price", nil, 5*time.Second)
			if err != nil || string(r.Data) != "leaf" {
				t.Fatalf("request %d from the leaf side answered by %q (%v), want the local member", i, r.Data, err)
			}
			r, err = hc.Request("svc.price", nil, 5*time.Second)
			if err != nil || string(r.Data) != "hub" {
				t.Fatalf("request %d from the hub side answered by %q (%v), want the hub member", i, r.Data, err)
			}
		}
	})
}

func TestLeafFailoverAcrossHubCluster(t *testing.T) {
	var hubs []*server.Server
	clusterPort := make([]int, 3)
	for i := range 3 {
		o := testkit.HubOpts(t)
		o.ServerName = fmt.Sprintf("hub-%d", i)
		o.JetStream = false
		o.Cluster = server.ClusterOpts{Name: "hubc", Host: "127.0.0.1", Port: -1}
		if i > 0 {
			o.Routes = server.RoutesFromStr(fmt.Sprintf("nats://127.0.0.1:%d", clusterPort[0]))
		}
		s := testkit.RunServer(t, o)
		clusterPort[i] = s.ClusterAddr().Port
		hubs = append(hubs, s)
	}
	testkit.WaitFor(t, 15*time.Second, func() error {
		for _, h := range hubs {
			if h.NumRoutes() < 2 {
				return errors.New("still waiting for hub cluster routes")
			}
		}
		return nil
	})
	var urls []string
	for _, h := range hubs {
		urls = append(urls, leafURL(t, h, "nats"))
	}
	a := startAgent(t, fmt.Sprintf("uplink:\n  hub_urls: [%s]\n  reconnect: {min: 100ms, max: 1s}\n", strings.Join(urls, ", ")))
	on := func() int {
		for i, h := range hubs {
			if h.Running() && h.NumLeafNodes() == 1 {
				return i
			}
		}
		return -1
	}
	testkit.WaitFor(t, 15*time.Second, func() error {
		if on() < 0 {
			return errors.New("still waiting for leaf on a hub node")
		}
		return nil
	})
	first := on()
	hubs[first].Shutdown()
	testkit.WaitFor(t, 20*time.Second, func() error {
		i := on()
		if !(i >= 0 && i != first) {
			return errors.New("still waiting for leaf reconnected to another hub node")
		}
		return nil
	})
	// Traffic flows through the new node.
	other := hubs[on()]
	hc := connect(t, other.ClientURL())
	sub, _ := hc.SubscribeSync("orders.>")
	hc.Flush()
	interest(t, a.Server(), "orders.2")
	lc := connect(t, a.ClientURL())
	lc.Publish("orders.2", []byte("after failover"))
	if _, err := sub.NextMsg(5 * time.Second); err != nil {
		t.Fatalf("no traffic after failover: %v", err)
	}
}

func TestLeafTLS(t *testing.T) {
	for _, first := range []bool{false, true} {
		t.Run(fmt.Sprintf("handshake_first=%v", first), func(t *testing.T) {
			pki := testkit.NewPKI(t, time.Now().Add(time.Hour))
			hub := testkit.TLSHub(t, pki, false, func(o *server.Options) { o.LeafNode.TLSHandshakeFirst = first })
			a := startAgent(t, fmt.Sprintf("uplink:\n  hub_urls: [%s]\n  tls: {ca_file: %s, handshake_first: %v}\n", leafURL(t, hub, "tls"), pki.CAFile, first))
			leafUp(t, hub, a)
		})
	}
	t.Run("unknown authority does not connect", func(t *testing.T) {
		pki, other := testkit.NewPKI(t, time.Now().Add(time.Hour)), testkit.NewPKI(t, time.Now().Add(time.Hour))
		hub := testkit.TLSHub(t, pki, false)
		a := startAgent(t, fmt.Sprintf("uplink:\n  hub_urls: [%s]\n  tls: {ca_file: %s}\n", leafURL(t, hub, "tls"), other.CAFile))
		testkit.WaitFor(t, 10*time.Second, func() error {
			if !strings.Contains(a.logs.String(), "certificate signed by unknown authority") {
				return errors.New("still waiting for TLS error in the log")
			}
			return nil
		})
		if hub.NumLeafNodes() != 0 {
			t.Fatal("leaf connected with an untrusted hub certificate")
		}
	})
}

func TestLeafAuth(t *testing.T) {
	kp, _ := nkeys.CreateUser()
	seed, _ := kp.Seed()
	pub, _ := kp.PublicKey()
	dir := t.TempDir()
	seedFile := writeFile(t, dir, "leaf.nk", string(seed), 0o600)
	cases := []struct {
		name string
		hub  func(o *server.Options)
		auth string
	}{
		{"token", func(o *server.Options) { o.Authorization = "s3cr3t" }, "  token: s3cr3t\n"},
		{"user+password", func(o *server.Options) { o.LeafNode.Username, o.LeafNode.Password = "leaf", "leaf-secret" }, "  user: leaf\n  password: leaf-secret\n"},
		{"password in URL", func(o *server.Options) { o.LeafNode.Username, o.LeafNode.Password = "leaf", "leaf-secret" }, ""},
		{"nkey", func(o *server.Options) { o.LeafNode.Nkey = pub }, "  nkey_seed: " + seedFile + "\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := testkit.HubOpts(t)
			tc.hub(o)
			hub := testkit.RunServer(t, o)
			u := leafURL(t, hub, "nats")
			if tc.auth == "" {
				u = strings.Replace(u, "nats://", "nats://leaf:leaf-secret@", 1)
			}
			a := startAgent(t, fmt.Sprintf("uplink:\n  hub_urls: [%q]\n%s", u, tc.auth))
			leafUp(t, hub, a)
		})
	}
	t.Run("wrong password is an auth error, not a hang", func(t *testing.T) {
		o := testkit.HubOpts(t)
		o.LeafNode.Username, o.LeafNode.Password = "leaf", "right"
		hub := testkit.RunServer(t, o)
		a := startAgent(t, fmt.Sprintf("uplink:\n  hub_urls: [%s]\n  user: leaf\n  password: wrong\n", leafURL(t, hub, "nats")))
		testkit.WaitFor(t, 10*time.Second, func() error {
			if !strings.Contains(strings.ToLower(a.logs.String()), "authorization violation") {
				return errors.New("still waiting for authorization error in the log")
			}
			return nil
		})
	})
}

// TestNATSConfigSeedRemotes runs a seed document's leaf block verbatim
// through nats_config, next to the agent's own keys.
func TestNATSConfigSeedRemotes(t *testing.T) {
	o := testkit.HubOpts(t)
	o.LeafNode.Username, o.LeafNode.Password = "leaf_user", "secure_password"
	hub := testkit.RunServer(t, o)
	port := strings.TrimPrefix(leafURL(t, hub, "nats"), "nats://127.0.0.1:")
	dir := t.TempDir()
	conf := writeFile(t, dir, "leaf.conf", fmt.Sprintf(`
leafnodes {
  remotes = [
    {
      url: "nats://leaf_user:secure_password@127.0.0.1:%s"
    }
  ]
}
`, port), 0o600)
	a := startAgent(t, "nats_config: "+conf+"\n")
	leafUp(t, hub, a)
	if !strings.Contains(a.logs.String(), `JetStream using domains: local \"s1\", remote \"hub\"`) {
		t.Errorf("agent domain not applied over nats_config:\n%s", a.logs)
	}
}

func TestStateDirLock(t *testing.T) {
	first := startAgent(t, "")
	cfg := *first.Config()
	cfg.Listen = "127.0.0.1:0"
	err := tryRun(t, &cfg)
	if err == nil || !strings.Contains(err.Error(), "in use by another edge-agent") || !strings.Contains(err.Error(), fmt.Sprint(os.Getpid())) {
		t.Fatalf("second agent on the same state_dir: %v", err)
	}
	// The first still works.
	nc := connect(t, first.ClientURL())
	if _, err := nc.Request("$JS.API.INFO", nil, 5*time.Second); err != nil {
		t.Fatalf("first agent harmed: %v", err)
	}
	if err := first.stop(); err != nil {
		t.Fatalf("graceful stop: %v", err)
	}
	if _, err := os.Stat(filepath.Join(cfg.StateDir, "jetstream")); err != nil {
		t.Errorf("JetStream store not under state_dir: %v", err)
	}
}
