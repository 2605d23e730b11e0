package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/edge-agent/edge-agent/uplink/hubops"
)

// hubStream is the fleet stream the harness audits, as an operator would
// create it (make run's dev hub does the same).
const hubStream = "EDGE"

// hub is the in-process hub: one node, or a three-node JetStream cluster
// for node-loss faults. Ports are fixed at creation so a restarted node
// comes back where the agent expects it, like a real hub behind DNS.
type hub struct {
	nodes []*hubNode
}

type hubNode struct {
	opts server.Options
	srv  *server.Server
}

func newHub(dir string, n int) (*hub, error) {
	h := &hub{}
	var routes []string
	ports := make([][3]int, n)
	for i := range ports {
		for j := range ports[i] {
			p, err := freePort()
			if err != nil {
				return nil, err
			}
			ports[i][j] = p
		}
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", ports[i][2]))
	}
	for i := range n {
		o := server.Options{
			ServerName: fmt.Sprintf("hub-%d", i), Host: "127.0.0.1", Port: ports[i][0],
			NoLog: true, NoSigs: true,
			JetStream: true, JetStreamDomain: "hub", StoreDir: filepath.Join(dir, fmt.Sprintf("hub-%d", i)),
			// NoAdvertise: a leaf must keep using the URL it was given (the
			// WAN proxy), not learn the hub's real address and bypass faults.
			LeafNode: server.LeafNodeOpts{Host: "127.0.0.1", Port: ports[i][1], NoAdvertise: true},
		}
		if n > 1 {
			o.Cluster = server.ClusterOpts{Name: "hub", Host: "127.0.0.1", Port: ports[i][2], NoAdvertise: true}
			o.Routes = server.RoutesFromStr(strings.Join(routes, ","))
		}
		h.nodes = append(h.nodes, &hubNode{opts: o})
	}
	for i := range h.nodes {
		if err := h.start(i); err != nil {
			h.close()
			return nil, err
		}
	}
	return h, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// start (re)starts node i on its original ports and store.
func (h *hub) start(i int) error {
	n := h.nodes[i]
	o := n.opts // server.NewServer keeps and mutates its options
	s, err := server.NewServer(&o)
	if err != nil {
		return fmt.Errorf("hub node %d: %w", i, err)
	}
	go s.Start()
	if !s.ReadyForConnections(20 * time.Second) {
		s.Shutdown()
		return fmt.Errorf("hub node %d not ready in 20s", i)
	}
	n.srv = s
	return nil
}

// stop shuts node i down (the data stays for start).
func (h *hub) stop(i int) {
	if s := h.nodes[i].srv; s != nil {
		s.Shutdown()
		s.WaitForShutdown()
		h.nodes[i].srv = nil
	}
}

func (h *hub) close() {
	for i := range h.nodes {
		h.stop(i)
	}
}

// leafAddrs are the host:port pairs a leaf dials, one per node.
func (h *hub) leafAddrs() []string {
	var out []string
	for _, n := range h.nodes {
		out = append(out, fmt.Sprintf("127.0.0.1:%d", n.opts.LeafNode.Port))
	}
	return out
}

func (h *hub) clientURLs() string {
	var out []string
	for _, n := range h.nodes {
		out = append(out, fmt.Sprintf("nats://127.0.0.1:%d", n.opts.Port))
	}
	return strings.Join(out, ",")
}

// leafNode is the node currently holding a leaf connection, -1 if none.
func (h *hub) leafNode() int {
	for i, n := range h.nodes {
		if n.srv != nil && n.srv.NumLeafNodes() > 0 {
			return i
		}
	}
	return -1
}

// connect opens a harness connection to the hub that survives restarts.
func (h *hub) connect() (*nats.Conn, jetstream.JetStream, error) {
	nc, err := nats.Connect(h.clientURLs(), nats.Name("chaos-audit"), nats.MaxReconnects(-1),
		nats.ReconnectWait(100*time.Millisecond), nats.RetryOnFailedConnect(true))
	if err != nil {
		return nil, nil, fmt.Errorf("connect to hub: %w", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, js, nil
}

// ensureStream creates EDGE, replicated on every node; a fresh cluster
// needs a moment to elect its meta leader, so it retries until a deadline.
func (h *hub) ensureStream(ctx context.Context, js jetstream.JetStream) error {
	cfg := hubops.HubStreamConfig(hubStream, "edge", 2*time.Hour)
	cfg.Replicas = len(h.nodes)
	deadline := time.Now().Add(60 * time.Second)
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := hubops.EnsureHubStream(cctx, js, cfg)
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || errors.Is(ctx.Err(), context.Canceled) {
			return fmt.Errorf("create hub stream %s: %w", hubStream, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}
