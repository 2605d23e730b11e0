package uplink

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/edge-agent/edge-agent/internal/testkit"
	"github.com/edge-agent/edge-agent/uplink/hubops"
)

// TestHubClusterNodeLoss stops the hub node the leaf is attached to while
// readings flow, and audits the hub stream: every local reading exactly
// once, in order.
//
// The hub stream EDGE has 3 replicas: the point is that losing any one hub
// node loses nothing and stops nothing. With 1 replica, losing the node
// that holds the stream stops ingest until that node is back; the
// forwarder would keep the readings safe in the site buffer (the cursor
// only moves on a hub ack), but that proves the buffer, not the cluster.
// To make it the worst case, the node we stop is also the stream leader:
// publishes and acks in flight through it are lost, the remaining two
// elect a new leader, and the forwarder's resend from its cursor must be
// de-duplicated by the replicated duplicate window.
//
// Every hub node has LeafNode.NoAdvertise: a real hub cluster sits behind
// addresses the stores cannot reach (internal IPs, a load balancer), so
// the fleet config lists every hub URL (uplink.hub_urls) and the leaf must
// fail over using only those, not what the hub gossips.
func TestHubClusterNodeLoss(t *testing.T) {
	const site = "store-cluster"
	names := []string{"hub-a", "hub-b", "hub-c"}
	routes := make([]*url.URL, len(names))
	ports := make([]int, len(names))
	for i := range names {
		ports[i] = testkit.FreePort(t)
		routes[i] = &url.URL{Scheme: "nats", Host: fmt.Sprintf("127.0.0.1:%d", ports[i])}
	}
	node := func(i int, o *server.Options) {
		o.ServerName = names[i]
		o.LeafNode.NoAdvertise = true
		o.Cluster = server.ClusterOpts{Name: "hub", Host: "127.0.0.1", Port: ports[i]}
		o.Routes = routes
	}
	// hub-a is the env's hub (its client holds the audit connection and
	// survives); hub-b and hub-c start first, inside its options hook, and
	// route to it while it comes up.
	var others []*server.Server
	var lo *server.Options
	var gate *Gate
	e := newFwEnv(t, site, fwEnvOpts{
		noStream: true,
		hub: func(o *server.Options) {
			node(0, o)
			for i := 1; i < len(names); i++ {
				no := testkit.HubOpts(t)
				node(i, no)
				s, err := server.NewServer(no)
				if err != nil {
					t.Fatal(err)
				}
				go s.Start()
				t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
				others = append(others, s)
			}
		},
		leaf: func(o *server.Options) {
			for _, s := range others {
				if !s.ReadyForConnections(10 * time.Second) {
					t.Fatal("hub node not ready")
				}
			}
			r := o.LeafNode.Remotes[0]
			// hub-b, hub-c, hub-a in order: the leaf lands on hub-b or
			// hub-c, and hub-a (the audit's node) is a failover target.
			r.URLs = []*url.URL{leafURL(t, others[0]), leafURL(t, others[1]), r.URLs[0]}
			r.NoRandomize = true
			var err error
			if gate, err = GateRemote(r); err != nil {
				t.Fatal(err)
			}
			gate.Start()
			lo = o
		},
	})
	e.cfg.HubURLs = nil
	for _, u := range lo.LeafNode.Remotes[0].URLs {
		e.cfg.HubURLs = append(e.cfg.HubURLs, u.String())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	sc := hubops.HubStreamConfig("EDGE", "edge", 2*time.Hour)
	sc.Replicas = 3
	var err error
	testkit.WaitFor(t, 30*time.Second, func() error {
		// Short tries: a request sent before the meta leader exists is
		// never answered.
		c, cc := context.WithTimeout(ctx, 2*time.Second)
		defer cc()
		_, err = hubops.EnsureHubStream(c, e.hubJS, sc)
		if err != nil {
			return errors.New("still waiting for JetStream cluster to create the R3 stream")
		}
		return nil
	})

	// The leaf dials hub-b first, but a first attempt that fails while the
	// cluster settles moves it on to hub-c: the node to stop is whichever
	// of the two holds the leaf (hub-a holds the audit connection).
	link := runLink(t, e, gate, quickReconnect)
	var victim *server.Server
	testkit.WaitFor(t, 15*time.Second, func() error {
		for _, s := range others {
			if link.Connected() && s.NumLeafNodes() == 1 {
				victim = s
				return nil
			}
		}
		return errors.New("still waiting for leaf on hub-b or hub-c")
	})
	survivor := others[0]
	if victim == survivor {
		survivor = others[1]
	}
	name := victim.Name()
	leaderOn(t, e, "EDGE", name)
	w := &wanEnv{fwEnv: e, link: link}
	w.forwarder()
	stop := w.flow("telemetry.flow", 2*time.Millisecond)
	e.waitHubPast(300, 30*time.Second, "flow reaching the hub")

	lost := time.Now()
	victim.Shutdown()
	before := e.hubCount()
	testkit.WaitFor(t, 30*time.Second, func() error {
		if !(link.Connected() && e.hub.NumLeafNodes()+survivor.NumLeafNodes() == 1) {
			return errors.New("still waiting for leaf on a surviving node")
		}
		return nil
	})
	e.waitHubPast(before+100, 30*time.Second, "readings flowing again")
	t.Logf("%s (leaf node and stream leader) stopped: readings flowing again after %s, link on %s", name, time.Since(lost).Round(time.Millisecond), link.Status().Hub)

	n := stop()
	e.waitHub(n, 30*time.Second, "every reading at the hub")
	// Reading the stream back creates a consumer, which needs a meta
	// leader; it may have been the stopped node too.
	testkit.WaitFor(t, 30*time.Second, func() error {
		jz, err := e.hub.Jsz(nil)
		if !(err == nil && jz.Meta != nil && jz.Meta.Leader != "" && jz.Meta.Leader != name) {
			return errors.New("still waiting for a JetStream meta leader among the survivors")
		}
		return nil
	})
	e.checkExactlyOnce(e.hubMsgs(), "TELEMETRY", "telemetry.flow", 1, n)
	si, err := e.hubJS.Stream(ctx, "EDGE")
	if err != nil {
		t.Fatal(err)
	}
	if l := si.CachedInfo().Cluster.Leader; l == name || l == "" {
		t.Fatalf("stream leader after the loss = %q", l)
	}
	t.Logf("%d readings, exactly once; link reconnects %d", n, link.Status().Reconnects)
}

// leafURL is s's leafnode address.
func leafURL(t *testing.T, s *server.Server) *url.URL {
	t.Helper()
	v, err := s.Varz(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &url.URL{Scheme: "nats", Host: fmt.Sprintf("127.0.0.1:%d", v.LeafNode.Port)}
}

// leaderOn moves stream's leadership to the named hub node.
func leaderOn(t *testing.T, e *fwEnv, stream, name string) {
	t.Helper()
	req, _ := json.Marshal(map[string]any{"placement": map[string]string{"preferred": name}})
	// Each request has its own deadline, so a slow election early on does
	// not leave the later polls with an expired context.
	leader := func() string {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		s, err := e.hubJS.Stream(ctx, stream)
		if err != nil || s.CachedInfo().Cluster == nil {
			return ""
		}
		return s.CachedInfo().Cluster.Leader
	}
	// A stepdown under load can elect another node despite the preference
	// (a replica that is behind is not eligible): ask again until it lands.
	deadline := time.Now().Add(60 * time.Second)
	for {
		testkit.WaitFor(t, 20*time.Second, func() error {
			if leader() == "" {
				return errors.New("still waiting for a stream leader")
			}
			return nil
		})
		if leader() == name {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("stream %s leader is %s, not %s, after repeated stepdowns", stream, leader(), name)
		}
		resp, err := e.hubNC.Request("$JS.API.STREAM.LEADER.STEPDOWN."+stream, req, 5*time.Second)
		if err != nil {
			t.Fatalf("stream %s leader stepdown: %v", stream, err)
		}
		var r struct {
			Success bool            `json:"success"`
			Error   json.RawMessage `json:"error"`
		}
		if err := json.Unmarshal(resp.Data, &r); err != nil || !r.Success {
			t.Fatalf("stream %s leader stepdown to %s: %s", stream, name, resp.Data)
		}
		until := time.Now().Add(10 * time.Second)
		for time.Now().Before(until) && leader() != name {
			time.Sleep(50 * time.Millisecond)
		}
	}
}
