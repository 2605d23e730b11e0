package agent

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/edge-agent/edge-agent/internal/testkit"
)

// trustSite is the site every hub below knows.
const trustSite = "store-0042"

// trustHub is a hub the site dials: with no per-site permissions (the
// seeds' dev hub: any client of its account may publish and subscribe
// anything), or the README's per-site leaf user.
type trustHub struct {
	name, client, leaf string // leaf: host:port of the leafnode listener
	leafAuth           string // user:password@ in the site's hub URL
	clientOpts         []nats.Option
}

func inProcessTrustHub(t *testing.T) trustHub {
	hub := testkit.RunServer(t, testkit.HubOpts(t))
	return trustHub{name: "in-process", client: hub.ClientURL(), leaf: strings.TrimPrefix(leafURL(t, hub, "nats"), "nats://")}
}

// documentedTrustHub is uplink/testdata/hub.conf, the README's hub with a
// per-site leaf user, on free ports; hub clients are its ops user.
func documentedTrustHub(t *testing.T) trustHub {
	text, err := os.ReadFile("../uplink/testdata/hub.conf")
	if err != nil {
		t.Fatal(err)
	}
	conf := strings.NewReplacer("port: 4222", "port: -1", "port: 7422", "port: -1", "/var/lib/nats", t.TempDir()).Replace(string(text))
	hub := serverFromConfig(t, conf, func(o *server.Options) { o.Host, o.LeafNode.Host = "127.0.0.1", "127.0.0.1" })
	return trustHub{name: "documented", client: hub.ClientURL(), leaf: strings.TrimPrefix(leafURL(t, hub, "nats"), "nats://"),
		leafAuth: trustSite + ":" + trustSite + "-secret@", clientOpts: []nats.Option{nats.UserInfo("ops", "ops-secret")}}
}

// debianTrustHub runs Debian's nats-server 2.9 (apt-get install -y
// nats-server) as the hub, or skips.
func debianTrustHub(t *testing.T) trustHub {
	bin, err := exec.LookPath("nats-server")
	if err != nil {
		if bin, err = exec.LookPath("/usr/sbin/nats-server"); err != nil {
			t.Skip("no nats-server binary (apt-get install -y nats-server): not tested against a stock hub")
		}
	}
	ver, _ := exec.Command(bin, "--version").CombinedOutput()
	dir := t.TempDir()
	free := func() int {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return l.Addr().(*net.TCPAddr).Port
	}
	h := trustHub{name: strings.TrimSpace(string(ver)), client: fmt.Sprintf("nats://127.0.0.1:%d", free()), leaf: fmt.Sprintf("127.0.0.1:%d", free())}
	conf := writeFile(t, dir, "hub.conf", fmt.Sprintf("server_name: ext-hub\nlisten: %s\njetstream { store_dir: %q, domain: hub }\nleafnodes { listen: %s }\n",
		strings.TrimPrefix(h.client, "nats://"), filepath.Join(dir, "js"), h.leaf), 0o600)
	cmd := exec.Command(bin, "-c", conf, "-l", filepath.Join(dir, "hub.log"))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	testkit.WaitFor(t, 20*time.Second, func() error {
		nc, err := nats.Connect(h.client)
		if err == nil {
			nc.Close()
		}
		if err != nil {
			return fmt.Errorf("still waiting for %s accepting clients", h.name)
		}
		return nil
	})
	return h
}

// trustAgent starts an agent whose only remote is an uplink block, or one
// leafnodes remote from a nats_config file (the seed documents' form).
func trustAgent(t *testing.T, hub trustHub, remote string) *testAgent {
	url := "nats://" + hub.leafAuth + hub.leaf
	if remote == "uplink" {
		return startAgent(t, fmt.Sprintf("site: %s\nuplink:\n  hub_urls: [%q]\n", trustSite, url))
	}
	conf := writeFile(t, t.TempDir(), "leaf.conf", fmt.Sprintf("leafnodes {\n  remotes = [\n    {url: %q}\n  ]\n}\n", url), 0o600)
	return startAgent(t, "site: "+trustSite+"\nnats_config: "+conf+"\n")
}

// A hub client tries what issue 16 found:
// create, purge, delete and edit in the site's JetStream domain, use the
// site's JetStream outside its domain, write into the local streams and the
// cursor backups, command local apps around the downlink, and read the raw
// streams, the site's advisories and the agent's inboxes. Each fails, for
// an uplink remote and for a nats_config one, against hubs with no per-site
// permissions (this repository's nats-server and Debian's 2.9) and the
// README's per-site permissions (which let the site's API through); reads
// keep working.
func TestHubCannotReachPastTheSite(t *testing.T) {
	for _, h := range []struct {
		name  string
		start func(*testing.T) trustHub
	}{{"in-process", inProcessTrustHub}, {"debian", debianTrustHub}, {"documented", documentedTrustHub}} {
		for _, remote := range []string{"uplink", "nats_config"} {
			t.Run(h.name+"/"+remote, func(t *testing.T) {
				hub := h.start(t)
				t.Logf("hub: %s", hub.name)
				hjs := jsConnect(t, hub.client, hub.clientOpts...)
				hubInit(t, hjs, edgeStream)
				a := trustAgent(t, hub, remote)
				checkHubTrust(t, hub, a)
				if remote == "uplink" {
					checkForwardedAll(t, a, hjs)
				}
			})
		}
	}
}

func checkHubTrust(t *testing.T, hub trustHub, a *testAgent) {
	ctx := t.Context()
	testkit.WaitFor(t, 15*time.Second, func() error {
		if a.Server().NumLeafNodes() != 1 {
			return errors.New("still waiting for leaf connection")
		}
		return nil
	})
	hc := connect(t, hub.client, hub.clientOpts...)
	lc := connect(t, a.ClientURL())
	api := "$JS." + trustSite + ".API."
	// Barriers travel on the site's own hub subjects, which every hub lets
	// through both ways.
	barrierSubj := "edge." + trustSite + ".trust-barrier"
	testkit.WaitFor(t, 15*time.Second, func() error {
		r, err := hc.Request(api+"INFO", nil, time.Second)
		if !(err == nil && strings.Contains(string(r.Data), `"domain":"`+trustSite+`"`)) {
			return errors.New("still waiting for the site's JetStream answering the hub")
		}
		return nil
	})
	for i := range 5 {
		if _, err := a.js.Publish(ctx, "telemetry.probe", fmt.Appendf(nil, `{"v":%d}`, i)); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("reads work", func(t *testing.T) {
		for _, op := range []string{"STREAM.NAMES", "STREAM.INFO.TELEMETRY", "CONSUMER.NAMES.TELEMETRY"} {
			r, err := hc.Request(api+op, nil, 5*time.Second)
			if err != nil || strings.Contains(string(r.Data), `"error"`) {
				t.Errorf("%s from the hub: %v %s", op, err, msgData(r))
			}
		}
		r, err := hc.Request(api+"STREAM.MSG.GET.TELEMETRY", []byte(`{"seq":1}`), 5*time.Second)
		if err != nil || !strings.Contains(string(r.Data), `"message"`) {
			t.Errorf("STREAM.MSG.GET from the hub: %v %s", err, msgData(r))
		}
	})

	t.Run("no admin in the site's domain, nor outside it", func(t *testing.T) {
		for _, req := range []struct{ subj, body string }{
			{api + "STREAM.CREATE.HOG", `{"name":"HOG","subjects":["hog.>"],"storage":"file"}`},
			{api + "STREAM.UPDATE.TELEMETRY", `{"name":"TELEMETRY","subjects":["telemetry.>"],"max_msgs":1}`},
			{api + "STREAM.PURGE.TELEMETRY", ``},
			{api + "STREAM.MSG.DELETE.TELEMETRY", `{"seq":1}`},
			{api + "STREAM.DELETE.ALERTS", ``},
			{api + "STREAM.DELETE.EDGE_AGENT_STATE", ``},
			{api + "CONSUMER.DURABLE.CREATE.TELEMETRY.hog", `{"stream_name":"TELEMETRY","config":{"durable_name":"hog"}}`},
			{api + "ACCOUNT.PURGE.$G", ``},
			{"$JS.API.STREAM.DELETE.TELEMETRY", ``},
			{"$JS.API.STREAM.PURGE.TELEMETRY", ``},
		} {
			r, err := hc.Request(req.subj, []byte(req.body), 2*time.Second)
			if err == nil && strings.Contains(string(r.Data), `"success":true`) || err == nil && strings.Contains(string(r.Data), `"created"`) {
				t.Errorf("%s from the hub succeeded: %s", req.subj, r.Data)
			}
		}
		if _, err := a.js.Stream(ctx, "HOG"); !errors.Is(err, jetstream.ErrStreamNotFound) {
			t.Errorf("the hub created stream HOG on the site (lookup: %v)", err)
		}
		for _, name := range []string{"TELEMETRY", "ALERTS", "EDGE_AGENT_STATE"} {
			s, err := a.js.Stream(ctx, name)
			if err != nil {
				t.Fatalf("stream %s after the hub's attempts: %v", name, err)
			}
			if name == "TELEMETRY" && (s.CachedInfo().State.Msgs != 5 || s.CachedInfo().Config.MaxMsgs == 1) {
				t.Errorf("TELEMETRY changed by the hub: %d messages, max_msgs %d", s.CachedInfo().State.Msgs, s.CachedInfo().Config.MaxMsgs)
			}
		}
		if _, err := a.js.Consumer(ctx, "TELEMETRY", "hog"); err == nil {
			t.Errorf("the hub created durable consumer hog on TELEMETRY")
		}
	})

	t.Run("no writes into what the agent stores or owns", func(t *testing.T) {
		local, err := lc.SubscribeSync(">")
		if err != nil {
			t.Fatal(err)
		}
		barrier, _ := lc.SubscribeSync(barrierSubj)
		lc.Flush()
		waitForHubInterest(t, hc, barrierSubj, barrier)
		for _, subj := range []string{"telemetry.x", "alerts.x", "edge-agent.cursor.TELEMETRY", "cmd.reboot"} {
			if err := hc.Publish(subj, []byte(`{"cursor":999999,"stream_id":"forged"}`)); err != nil {
				t.Fatal(err)
			}
		}
		hc.Publish(barrierSubj, []byte("barrier"))
		hc.Flush()
		if _, err := barrier.NextMsg(5 * time.Second); err != nil {
			t.Fatalf("barrier did not cross: %v", err)
		}
		// Published before the barrier on one connection: had they crossed,
		// the local wildcard subscriber would hold them already.
		for {
			m, err := local.NextMsg(100 * time.Millisecond)
			if err != nil {
				break
			}
			if strings.Contains(string(m.Data), "forged") {
				t.Errorf("hub publish on %s reached the site", m.Subject)
			}
		}
		for name, want := range map[string]uint64{"TELEMETRY": 5, "ALERTS": 0} {
			if s, err := a.js.Stream(ctx, name); err != nil || s.CachedInfo().State.Msgs != want {
				t.Errorf("stream %s: %v, want %d messages", name, err, want)
			}
		}
	})

	t.Run("no raw streams, advisories or agent inboxes up", func(t *testing.T) {
		var subs []*nats.Subscription
		for _, s := range []string{"telemetry.>", "alerts.>", "edge-agent.>", "$JS.EVENT.>", "_INBOX.>"} {
			sub, err := hc.SubscribeSync(s)
			if err != nil {
				t.Fatal(err)
			}
			subs = append(subs, sub)
		}
		barrier, _ := hc.SubscribeSync(barrierSubj)
		hc.Flush()
		testkit.WaitFor(t, 10*time.Second, func() error {
			if !a.Server().GlobalAccount().SubscriptionInterest(barrierSubj) {
				return errors.New("still waiting for hub interest at the site")
			}
			return nil
		})
		// The agent's own connection reads the buffer as the forwarder does
		// (a consumer, fetched into its inbox); the consumer's creation is
		// an advisory; a local app publishes and an alert is stored.
		if _, err := a.js.Publish(ctx, "alerts.door", []byte(`{"raw":"secret-alert"}`)); err != nil {
			t.Fatal(err)
		}
		lc.Publish("telemetry.y", []byte(`{"raw":"secret-reading"}`))
		c, err := a.js.CreateConsumer(ctx, "TELEMETRY", jetstream.ConsumerConfig{Name: "probe-reader", AckPolicy: jetstream.AckNonePolicy})
		if err != nil {
			t.Fatal(err)
		}
		b, err := c.Fetch(5, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for range b.Messages() {
			n++
		}
		if n == 0 {
			t.Fatal("the agent's connection read nothing from TELEMETRY")
		}
		lc.Publish(barrierSubj, []byte("barrier"))
		lc.Flush()
		if _, err := barrier.NextMsg(5 * time.Second); err != nil {
			t.Fatalf("barrier did not cross: %v", err)
		}
		for _, sub := range subs {
			for {
				m, err := sub.NextMsg(200 * time.Millisecond)
				if err != nil {
					break
				}
				// The hub's own advisories and inboxes are its business; the
				// site's never show.
				if d := string(m.Data); strings.Contains(d, "secret-") || strings.Contains(d, `"v":`) || strings.Contains(m.Subject+d, "probe-reader") ||
					strings.HasPrefix(m.Subject, "telemetry.") || strings.HasPrefix(m.Subject, "alerts.") || strings.HasPrefix(m.Subject, "edge-agent.") {
					t.Errorf("site traffic reached the hub on %s: %.200s", m.Subject, d)
				}
			}
		}
	})
}

// checkForwardedAll waits until the hub stream holds every reading the
// site stored: the agent's inboxes stay local, yet the hub's acks reach the
// forwarder through the boundary.
func checkForwardedAll(t *testing.T, a *testAgent, hjs jetstream.JetStream) {
	t.Helper()
	var want uint64
	for _, name := range []string{"TELEMETRY", "ALERTS"} {
		s, err := a.js.Stream(t.Context(), name)
		if err != nil {
			t.Fatal(err)
		}
		want += s.CachedInfo().State.Msgs
	}
	testkit.WaitFor(t, 30*time.Second, func() error {
		s, err := hjs.Stream(t.Context(), "EDGE")
		if !(err == nil && s.CachedInfo().State.Msgs == want) {
			return fmt.Errorf("still waiting for %d readings forwarded to the hub", want)
		}
		return nil
	})
}

// waitForHubInterest publishes probes from the hub until the site's
// subscriber on subject gets one: the subscription has crossed the leaf.
func waitForHubInterest(t *testing.T, hc *nats.Conn, subject string, sub *nats.Subscription) {
	t.Helper()
	testkit.WaitFor(t, 10*time.Second, func() error {
		hc.Publish(subject, []byte("probe"))
		hc.Flush()
		_, err := sub.NextMsg(50 * time.Millisecond)
		if err != nil {
			return fmt.Errorf("still waiting for site interest at the hub in %s", subject)
		}
		return nil
	})
	for {
		if _, err := sub.NextMsg(100 * time.Millisecond); err != nil {
			return
		}
	}
}

func msgData(m *nats.Msg) string {
	if m == nil {
		return ""
	}
	return string(m.Data)
}
