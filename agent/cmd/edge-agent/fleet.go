package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/edge-agent/edge-agent/agent"
	"github.com/edge-agent/edge-agent/uplink/hubops"
)

// cmdFleet prints every site the hub has heard from, worst first, from the
// hub's last-heartbeat table (stream EDGE_STATUS): one read, no waiting for
// a heartbeat interval, however many sites.
func cmdFleet(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "config" {
		return cmdFleetConfig(args[1:], stdout, stderr)
	}
	fs := newFlags("fleet", stderr)
	srv := fs.String("server", "nats://127.0.0.1:4222", "hub client URL(s), comma separated")
	creds := fs.String("creds", "", "credentials file for the hub")
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	stale := fs.Duration("stale", 0, "list only sites not heard from for this long, e.g. 5m (exit 1 if any)")
	domain := fs.String("domain", "", "JetStream domain of the hub holding EDGE_STATUS (multi-tier: the global hub's)")
	prefix := fs.String("prefix", "edge", "uplink.subject_prefix of the fleet")
	timeout := fs.Duration("timeout", 30*time.Second, "give up after this long")
	metrics := fs.String("metrics", "", "serve the fleet as Prometheus metrics on this host:port (GET /metrics, read from the hub on each scrape) until interrupted")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	opts := []nats.Option{nats.Name("edge-agent fleet"), nats.Timeout(10 * time.Second)}
	if *creds != "" {
		opts = append(opts, nats.UserCredentials(*creds))
	}
	nc, err := nats.Connect(*srv, opts...)
	if err != nil {
		return exitFor(fmt.Errorf("connect to hub %s: %w", *srv, err), stderr)
	}
	defer nc.Close()
	// NewWithDomain refuses "": without --domain the hub's own JetStream.
	js, err := jetstream.New(nc)
	if *domain != "" {
		js, err = jetstream.NewWithDomain(nc, *domain)
	}
	if err != nil {
		return exitFor(fmt.Errorf("hub JetStream (--domain %q): %w", *domain, err), stderr)
	}
	if *metrics != "" {
		return serveFleetMetrics(*metrics, js, *prefix, *stale, stdout, stderr)
	}
	sites, err := hubops.ReadFleet(ctx, js, *prefix)
	if err != nil {
		return exitFor(err, stderr)
	}
	now := time.Now()
	sites = hubops.Rank(sites, now, *stale)
	code := 0
	if *stale > 0 {
		silent := sites[:0]
		for _, s := range sites {
			if s.Silent {
				silent = append(silent, s)
			}
		}
		sites = silent
		if len(sites) > 0 {
			code = 1
		}
	}
	if *asJSON {
		if sites == nil {
			sites = []hubops.SiteView{}
		}
		if err := printJSON(stdout, sites); err != nil {
			return exitFor(err, stderr)
		}
		return code
	}
	renderFleet(stdout, sites, now)
	renderConfigDrift(ctx, stdout, js, *prefix)
	return code
}

func renderFleet(w io.Writer, sites []hubops.SiteView, now time.Time) {
	if len(sites) == 0 {
		fmt.Fprintln(w, "no sites (none has sent a heartbeat to this hub, or none matches)")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SITE\tLAST SEEN\tVERSION\tLINK\tBACKLOG\tFAILING\tCONFIG\tWARNINGS")
	for _, s := range sites {
		hb := s.Heartbeat
		link := string(hb.Link)
		if hb.Reason != "" {
			link += " (" + string(hb.Reason) + ")"
		}
		warn := strings.Join(s.Warnings, "; ")
		if warn == "" {
			warn = "-"
		}
		fmt.Fprintf(tw, "%s\t%s ago\t%s\t%s\t%d\t%d\t%s\t%s\n", s.Site, now.Sub(s.LastSeen).Round(time.Second), hb.Version, link, s.Backlog(), len(hb.Failing), configColumn(hb.Config), warn)
	}
	_ = tw.Flush()
	fmt.Fprintf(w, "%d sites\n", len(sites))
}

// serveFleetMetrics is the fleet exporter: one Prometheus target at the
// hub for every site's last heartbeat (packaging/grafana/edge-fleet.json).
func serveFleetMetrics(addr string, js jetstream.JetStream, prefix string, stale time.Duration, stdout, stderr io.Writer) int {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return exitFor(fmt.Errorf("--metrics %s: %w", addr, err), stderr)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	fmt.Fprintf(stdout, "fleet metrics on http://%s/metrics (Ctrl-C stops)\n", l.Addr())
	srv := &http.Server{Handler: agent.FleetMetricsHandler(js, prefix, stale), ReadHeaderTimeout: 5 * time.Second}
	go func() { <-ctx.Done(); _ = srv.Close() }()
	if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return exitFor(err, stderr)
	}
	return 0
}
