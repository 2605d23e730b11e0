package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/edge-agent/edge-agent/internal/confkit"
	"github.com/edge-agent/edge-agent/uplink"
	"github.com/edge-agent/edge-agent/uplink/hubops"
)

const hubUsage = `usage:
  edge-agent hub init --server URL [--creds FILE | --user U --password P] [--stream EDGE] [--prefix edge]
                      [--dupe-window 2h] [--max-bytes SIZE] [--max-age DURATION] [--replicas N] [--domain D]
      create the fleet stream and the fleet status table (EDGE_STATUS) at the hub,
      or verify existing ones (never changes them)
  edge-agent hub leaf-user --site SITE [--prefix edge] [--password PW]
      the hub config entry for one site's leaf user, allowed only its own subjects
`

// cmdHub is run by hub operators, not on the device: it prepares the hub
// side the forwarder publishes into.
func cmdHub(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, hubUsage)
		return 2
	}
	switch args[0] {
	case "init":
		return cmdHubInit(args[1:], stdout, stderr)
	case "leaf-user":
		return cmdHubLeafUser(args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "edge-agent hub: unknown command %q\n%s", args[0], hubUsage)
	return 2
}

func cmdHubInit(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("hub init", stderr)
	srv := fs.String("server", "", "hub client URL(s), comma separated (required)")
	creds := fs.String("creds", "", "credentials file for the hub")
	user := fs.String("user", "", "hub user")
	password := fs.String("password", "", "hub password")
	stream := fs.String("stream", "EDGE", "hub stream name")
	prefix := fs.String("prefix", "edge", "uplink.subject_prefix of the fleet")
	dupes := fs.Duration("dupe-window", 2*time.Hour, "duplicate window: must outlast the longest resend after an outage or crash")
	maxBytes := fs.String("max-bytes", "", "stream size limit with a unit, e.g. 500GiB (default unlimited)")
	maxAge := fs.Duration("max-age", 0, "drop readings older than this, e.g. 2160h (default: keep)")
	replicas := fs.Int("replicas", 1, "stream replicas (3 on a 3-node hub cluster)")
	domain := fs.String("domain", "", "JetStream domain of the hub, if it has one and the URL is not in it")
	timeout := fs.Duration("timeout", 30*time.Second, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *srv == "" {
		fmt.Fprintf(stderr, "edge-agent hub init: --server is required\n%s", hubUsage)
		return 2
	}
	want := hubops.HubStreamConfig(*stream, *prefix, *dupes)
	want.MaxAge, want.Replicas = *maxAge, *replicas
	if *maxBytes != "" {
		n, err := confkit.ParseSize(*maxBytes)
		if err != nil {
			return exitFor(fmt.Errorf("--max-bytes: %w", err), stderr)
		}
		want.MaxBytes = int64(n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	js, closeNC, err := hubJetStream(*srv, *creds, *user, *password, *domain)
	if err != nil {
		return exitFor(err, stderr)
	}
	defer closeNC()
	var batched bool // an existing stream allowed fast batches before
	s, verb, err := ensureReport(ctx, js, *srv, want.Name, func() (jetstream.Stream, error) {
		if old, err := js.Stream(ctx, want.Name); err == nil {
			batched = old.CachedInfo().Config.AllowBatchPublish
		}
		return hubops.EnsureHubStream(ctx, js, want)
	})
	if err != nil {
		return exitFor(err, stderr)
	}
	have := s.CachedInfo().Config
	if verb != "created" && !batched && have.AllowBatchPublish {
		verb = "verified existing (allowed fast batches)"
	}
	fmt.Fprintf(stdout, "%s hub stream %s: subjects %s, duplicate window %s, max bytes %s, max age %s, replicas %d\n",
		verb, have.Name, strings.Join(have.Subjects, " "), have.Duplicates, limitText(have.MaxBytes), ageText(have.MaxAge), have.Replicas)
	fmt.Fprintln(stdout, batchText(js, have.AllowBatchPublish))
	// The fleet table is what `edge-agent fleet` reads: without it the
	// heartbeats reach the hub but nothing keeps them.
	s, verb, err = ensureReport(ctx, js, *srv, hubops.StatusStream, func() (jetstream.Stream, error) { return hubops.EnsureStatusStream(ctx, js, *prefix) })
	if err != nil {
		return exitFor(err, stderr)
	}
	have = s.CachedInfo().Config
	// A hint is copied into tickets and chats: never with the password.
	fleetCmd := "edge-agent fleet --server " + uplink.RedactText(*srv)
	if *prefix != "edge" {
		fleetCmd += " --prefix " + *prefix
	}
	fmt.Fprintf(stdout, "%s hub stream %s: last heartbeat of each site (%s); read it with: %s\n",
		verb, have.Name, strings.Join(have.Subjects, " "), fleetCmd)
	if err := ensureConfigBucket(ctx, js, *replicas, uplink.RedactText(*srv), stdout); err != nil {
		return exitFor(err, stderr)
	}
	fmt.Fprintf(stdout, "sites publish %s.<site>.telemetry.> and %s.<site>.alerts.>; watch them with: nats sub '%s.>'\n", *prefix, *prefix, *prefix)
	return 0
}

// ensureReport runs one of uplink's Ensure* calls for stream name and says
// whether it created the stream, updated one that was there (EDGE_STATUS
// gains the clock republish) or verified it.
func ensureReport(ctx context.Context, js jetstream.JetStream, srv, name string, ensure func() (jetstream.Stream, error)) (jetstream.Stream, string, error) {
	before, lookErr := js.Stream(ctx, name)
	if lookErr != nil && !errors.Is(lookErr, jetstream.ErrStreamNotFound) {
		return nil, "", fmt.Errorf("hub %s: stream %s: %w (is JetStream enabled for this user's account?)", srv, name, lookErr)
	}
	s, err := ensure()
	if err != nil {
		return nil, "", err
	}
	if lookErr == nil && !reflect.DeepEqual(before.CachedInfo().Config, s.CachedInfo().Config) {
		return s, "updated existing", nil
	}
	if lookErr == nil {
		return s, "verified existing (not changed)", nil
	}
	return s, "created", nil
}

func hubJetStream(srv, creds, user, password, domain string) (jetstream.JetStream, func(), error) {
	opts := []nats.Option{nats.Name("edge-agent hub"), nats.Timeout(10 * time.Second)}
	if creds != "" {
		opts = append(opts, nats.UserCredentials(creds))
	}
	if user != "" {
		opts = append(opts, nats.UserInfo(user, password))
	}
	nc, err := nats.Connect(srv, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to hub %s: %w", srv, err)
	}
	var js jetstream.JetStream
	if domain == "" {
		js, err = jetstream.New(nc)
	} else {
		js, err = jetstream.NewWithDomain(nc, domain)
	}
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return js, nc.Close, nil
}

func limitText(n int64) string {
	if n <= 0 {
		return "unlimited"
	}
	return confkit.Size(n).String()
}

func ageText(d time.Duration) string {
	if d == 0 {
		return "unlimited"
	}
	return d.String()
}

func cmdHubLeafUser(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("hub leaf-user", stderr)
	site := fs.String("site", "", "site id (required)")
	prefix := fs.String("prefix", "edge", "uplink.subject_prefix of the fleet")
	password := fs.String("password", "CHANGE-ME", "the site's password (a bcrypt hash from `nats server passwd` works too)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *site == "" {
		fmt.Fprintf(stderr, "edge-agent hub leaf-user: --site is required\n%s", hubUsage)
		return 2
	}
	fmt.Fprintf(stdout, "# add to users: [...] of the hub account with JetStream (docs/UPLINK.md: Hub side)\n%s\n", hubops.HubLeafUser(*prefix, *site, *password))
	return 0
}

// batchText says whether sites may publish to the hub stream in fast
// batches, or why not.
func batchText(js jetstream.JetStream, allowed bool) string {
	switch {
	case allowed:
		return "fast batch publishing allowed (allow_batched): sites get a hub ack every few hundred readings"
	case !hubops.HubBatches(js):
		return "fast batch publishing unavailable: the hub runs nats-server " + js.Conn().ConnectedServerVersion() + ", older than 2.14; sites use one hub ack per reading (upgrade the hub and rerun hub init)"
	}
	return "fast batch publishing not allowed on this stream: sites use one hub ack per reading"
}
