package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/edge-agent/edge-agent/agent"
	"github.com/edge-agent/edge-agent/agent/fleetconfig"
	"github.com/edge-agent/edge-agent/uplink/hubops"
)

const fleetConfigUsage = `usage (hub clients; the bucket is ` + fleetconfig.Bucket + `, created by edge-agent hub init):
  edge-agent fleet config set --server URL (--fleet | --group G | --site S) FILE [--revision N]
      validate FILE as a fragment and write it if the key is still at revision N
      (omit --revision for a new key); prints the new revision
  edge-agent fleet config get --server URL (--fleet | --group G | --site S) [--revision N]
  edge-agent fleet config history --server URL (--fleet | --group G | --site S)
  edge-agent fleet config diff --server URL --site S
      what the site would change: its keys at the hub against the revisions it applied
  edge-agent fleet config status --server URL [--json]
      per site: latest revision at the hub, desired, applied, state, error (exit 1 on drift)
  edge-agent fleet config rollout --server URL --group G FILE [--waves 5%,25%,100%] [--abort-on 10%] [--wait 10m]
      stage a group fragment over the group's sites, stop and revert when a wave fails
common: [--creds FILE | --user U --password P] [--domain D] [--prefix edge] [--timeout 30s]
`

// fleetConfigFlags are the flags every subcommand shares.
type fleetConfigFlags struct {
	fs                                 *flag.FlagSet
	srv, creds, user, password, domain *string
	prefix                             *string
	timeout                            *time.Duration
	fleet                              *bool
	group, site                        *string
}

func newFleetConfigFlags(name string, stderr io.Writer) *fleetConfigFlags {
	fs := newFlags("fleet config "+name, stderr)
	return &fleetConfigFlags{
		fs:       fs,
		srv:      fs.String("server", "nats://127.0.0.1:4222", "hub client URL(s), comma separated"),
		creds:    fs.String("creds", "", "credentials file for the hub"),
		user:     fs.String("user", "", "hub user"),
		password: fs.String("password", "", "hub password"),
		domain:   fs.String("domain", "", "JetStream domain of the hub, if the URL is not in it"),
		prefix:   fs.String("prefix", "edge", "uplink.subject_prefix of the fleet"),
		timeout:  fs.Duration("timeout", 30*time.Second, "give up after this long"),
		fleet:    fs.Bool("fleet", false, "the fleet-wide fragment"),
		group:    fs.String("group", "", "a group's fragment"),
		site:     fs.String("site", "", "a site's fragment"),
	}
}

// parse allows flags after the FILE argument, as operators type them.
func (f *fleetConfigFlags) parse(args []string) ([]string, error) {
	var pos []string
	for {
		if err := f.fs.Parse(args); err != nil {
			return nil, err
		}
		args = f.fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// key is the one key the flags select.
func (f *fleetConfigFlags) key() (string, error) {
	var keys []string
	if *f.fleet {
		keys = append(keys, fleetconfig.FleetKey)
	}
	if *f.group != "" {
		keys = append(keys, fleetconfig.GroupKey(*f.group))
	}
	if *f.site != "" {
		keys = append(keys, fleetconfig.SiteKey(*f.site))
	}
	if len(keys) != 1 {
		return "", errors.New("choose exactly one of --fleet, --group G, --site S")
	}
	return keys[0], fleetconfig.CheckKey(keys[0])
}

func (f *fleetConfigFlags) connect() (jetstream.JetStream, func(), error) {
	return hubJetStream(*f.srv, *f.creds, *f.user, *f.password, *f.domain)
}

func (f *fleetConfigFlags) bucket(ctx context.Context) (jetstream.KeyValue, jetstream.JetStream, func(), error) {
	js, closeNC, err := f.connect()
	if err != nil {
		return nil, nil, nil, err
	}
	kv, err := fleetconfig.OpenBucket(ctx, js)
	if err != nil {
		closeNC()
		return nil, nil, nil, err
	}
	return kv, js, closeNC, nil
}

// usage reports a usage error of the subcommand (exit 2).
func (f *fleetConfigFlags) usage(stderr io.Writer, err error) int {
	fmt.Fprintf(stderr, "edge-agent %s: %v\n%s", f.fs.Name(), err, fleetConfigUsage)
	return 2
}

// withBucket runs do against the hub's config bucket and maps its error to
// the exit code; do's code stands when it has no error.
func (f *fleetConfigFlags) withBucket(ctx context.Context, stderr io.Writer, do func(jetstream.KeyValue, jetstream.JetStream) (int, error)) int {
	kv, js, closeNC, err := f.bucket(ctx)
	if err != nil {
		return exitFor(err, stderr)
	}
	defer closeNC()
	code, err := do(kv, js)
	if err != nil {
		return exitFor(err, stderr)
	}
	return code
}

// withKey parses args for the one key the flags select and runs do on it
// within --timeout.
func (f *fleetConfigFlags) withKey(args []string, stderr io.Writer, do func(ctx context.Context, kv jetstream.KeyValue, key string) error) int {
	if _, err := f.parse(args); err != nil {
		return 2
	}
	key, err := f.key()
	if err != nil {
		return f.usage(stderr, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *f.timeout)
	defer cancel()
	return f.withBucket(ctx, stderr, func(kv jetstream.KeyValue, _ jetstream.JetStream) (int, error) {
		return 0, do(ctx, kv, key)
	})
}

func cmdFleetConfig(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, fleetConfigUsage)
		return 2
	}
	f := newFleetConfigFlags(args[0], stderr)
	run := map[string]func(*fleetConfigFlags, []string, io.Writer, io.Writer) int{
		"set": fleetConfigSet, "get": fleetConfigGet, "history": fleetConfigHistory,
		"diff": fleetConfigDiff, "status": fleetConfigStatus, "rollout": fleetConfigRollout,
	}[args[0]]
	if run == nil {
		fmt.Fprintf(stderr, "edge-agent fleet config: unknown command %q\n%s", args[0], fleetConfigUsage)
		return 2
	}
	return run(f, args[1:], stdout, stderr)
}

// readFragment reads and validates FILE as a fragment for key: the
// check-config decoder (exit 78 with the key path), the keys the hub may
// never set, and a warning for keys outside the default allow list.
func readFragment(key, file string, stderr io.Writer) ([]byte, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, &agent.ConfigError{File: file, Msg: err.Error()}
	}
	name := file + " (for " + key + ")"
	if err := agent.CheckFragment(name, data); err != nil {
		return nil, err
	}
	outside, err := fleetconfig.NotAllowed(fleetconfig.Fragment{Key: key, Data: string(data)}, fleetconfig.DefaultAllow)
	if err != nil {
		return nil, &agent.ConfigError{File: name, Msg: err.Error()}
	}
	if len(outside) > 0 {
		fmt.Fprintf(stderr, "warning: %s sets %s, outside the default remote_config.allow: sites apply it only if their local file allows it, others reject it\n", file, strings.Join(outside, ", "))
	}
	return data, nil
}

func fleetConfigSet(f *fleetConfigFlags, args []string, stdout, stderr io.Writer) int {
	rev := f.fs.Uint64("revision", 0, "the key's current revision (compare-and-set); 0 or absent: the key must not exist")
	pos, err := f.parse(args)
	if err != nil {
		return 2
	}
	key, err := f.key()
	if err == nil && len(pos) != 1 {
		err = errors.New("one FILE is required")
	}
	if err != nil {
		return f.usage(stderr, err)
	}
	data, err := readFragment(key, pos[0], stderr)
	if err != nil {
		return exitFor(err, stderr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *f.timeout)
	defer cancel()
	return f.withBucket(ctx, stderr, func(kv jetstream.KeyValue, _ jetstream.JetStream) (int, error) {
		n, err := fleetconfig.Put(ctx, kv, key, data, *rev)
		if err != nil {
			return 0, err
		}
		fmt.Fprintf(stdout, "%s: revision %d\n", key, n)
		return 0, nil
	})
}

func fleetConfigGet(f *fleetConfigFlags, args []string, stdout, stderr io.Writer) int {
	rev := f.fs.Uint64("revision", 0, "an earlier revision (see history)")
	return f.withKey(args, stderr, func(ctx context.Context, kv jetstream.KeyValue, key string) error {
		var e jetstream.KeyValueEntry
		var err error
		if *rev > 0 {
			e, err = kv.GetRevision(ctx, key, *rev)
		} else {
			e, err = kv.Get(ctx, key)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
		fmt.Fprintf(stdout, "# %s revision %d, %s\n%s", key, e.Revision(), e.Created().UTC().Format(time.RFC3339), e.Value())
		return nil
	})
}

func fleetConfigHistory(f *fleetConfigFlags, args []string, stdout, stderr io.Writer) int {
	return f.withKey(args, stderr, func(ctx context.Context, kv jetstream.KeyValue, key string) error {
		hist, err := kv.History(ctx, key)
		if err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "REVISION\tWRITTEN\tOP\tBYTES")
		for _, e := range hist {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%d\n", e.Revision(), e.Created().UTC().Format(time.RFC3339), strings.TrimPrefix(e.Operation().String(), "KeyValue"), len(e.Value()))
		}
		_ = tw.Flush()
		return nil
	})
}

func fleetConfigStatus(f *fleetConfigFlags, args []string, stdout, stderr io.Writer) int {
	asJSON := f.fs.Bool("json", false, "print JSON")
	if _, err := f.parse(args); err != nil {
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), *f.timeout)
	defer cancel()
	return f.withBucket(ctx, stderr, func(kv jetstream.KeyValue, js jetstream.JetStream) (int, error) {
		st, err := configStatus(ctx, kv, js, *f.prefix)
		if err != nil {
			return 0, err
		}
		code := 0
		if len(st) > 0 && st[0].Drift != "" {
			code = 1
		}
		if *asJSON {
			if st == nil {
				st = []fleetconfig.SiteStatus{}
			}
			return code, printJSON(stdout, st)
		}
		if len(st) == 0 {
			fmt.Fprintln(stdout, "no site reports remote config (remote_config.enabled is off everywhere, or no heartbeat reached this hub)")
			return 0, nil
		}
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "SITE\tLATEST\tDESIRED\tAPPLIED\tSTATE\tERROR")
		for _, s := range st {
			e := s.Error
			if s.Drift != "" && e == "" {
				e = s.Drift
			}
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\t%s\n", s.Site, s.Latest, s.DesiredRev, s.AppliedRev, s.State, e)
		}
		_ = tw.Flush()
		return code, nil
	})
}

func configStatus(ctx context.Context, kv jetstream.KeyValue, js jetstream.JetStream, prefix string) ([]fleetconfig.SiteStatus, error) {
	latest, err := fleetconfig.Latest(ctx, kv)
	if err != nil {
		return nil, err
	}
	reps, err := hubops.FleetReports(js, prefix)(ctx)
	if err != nil {
		return nil, err
	}
	return fleetconfig.Status(latest, reps), nil
}

func fleetConfigDiff(f *fleetConfigFlags, args []string, stdout, stderr io.Writer) int {
	if _, err := f.parse(args); err != nil {
		return 2
	}
	if *f.site == "" {
		return f.usage(stderr, errors.New("--site is required"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), *f.timeout)
	defer cancel()
	return f.withBucket(ctx, stderr, func(kv jetstream.KeyValue, js jetstream.JetStream) (int, error) {
		return 0, configDiff(ctx, stdout, kv, js, *f.prefix, *f.site)
	})
}

// configDiff prints, key by key, what site would change: the fragments it
// applied against the hub's latest revisions.
func configDiff(ctx context.Context, stdout io.Writer, kv jetstream.KeyValue, js jetstream.JetStream, prefix, site string) error {
	reps, err := hubops.FleetReports(js, prefix)(ctx)
	if err != nil {
		return err
	}
	rep, ok := reps[site]
	if !ok {
		return fmt.Errorf("site %s has not reported remote config to this hub", site)
	}
	applied := map[string]uint64{}
	for _, fr := range strings.Fields(rep.Fragments) {
		if k, r, ok := strings.Cut(fr, "@"); ok {
			applied[k], _ = strconv.ParseUint(r, 10, 64)
		}
	}
	fmt.Fprintf(stdout, "site %s: %s, applied rev %d\n", site, rep.State, rep.AppliedRev)
	for _, k := range fleetconfig.KeysFor(site, rep.Groups) {
		var cur []byte
		var curRev uint64
		if e, err := kv.Get(ctx, k); err == nil {
			cur, curRev = e.Value(), e.Revision()
		}
		was := applied[k]
		if was == curRev {
			if was != 0 {
				fmt.Fprintf(stdout, "= %s@%d\n", k, was)
			}
			continue
		}
		var old []byte
		if was != 0 {
			if e, err := kv.GetRevision(ctx, k, was); err == nil {
				old = e.Value()
			}
		}
		fmt.Fprintf(stdout, "~ %s: applied @%d, hub @%d\n", k, was, curRev)
		for _, l := range lineDiff(string(old), string(cur)) {
			fmt.Fprintf(stdout, "  %s\n", l)
		}
	}
	return nil
}

// lineDiff is a minimal line diff (longest common subsequence): fragments
// are a few lines.
func lineDiff(a, b string) []string {
	x, y := splitLines(a), splitLines(b)
	l := make([][]int, len(x)+1)
	for i := range l {
		l[i] = make([]int, len(y)+1)
	}
	for i := len(x) - 1; i >= 0; i-- {
		for j := len(y) - 1; j >= 0; j-- {
			if x[i] == y[j] {
				l[i][j] = l[i+1][j+1] + 1
			} else {
				l[i][j] = max(l[i+1][j], l[i][j+1])
			}
		}
	}
	var out []string
	i, j := 0, 0
	for i < len(x) || j < len(y) {
		switch {
		case i < len(x) && j < len(y) && x[i] == y[j]:
			out = append(out, "  "+x[i])
			i, j = i+1, j+1
		case j < len(y) && (i == len(x) || l[i][j+1] >= l[i+1][j]):
			out = append(out, "+ "+y[j])
			j++
		default:
			out = append(out, "- "+x[i])
			i++
		}
	}
	return out
}

func splitLines(s string) []string {
	s = strings.TrimSuffix(s, "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func fleetConfigRollout(f *fleetConfigFlags, args []string, stdout, stderr io.Writer) int {
	waves := f.fs.String("waves", "5%,25%,100%", "cumulative share of the group's sites per wave")
	abortOn := f.fs.String("abort-on", "10%", "stop and revert when more than this share of a wave fails")
	wait := f.fs.Duration("wait", 10*time.Minute, "how long a wave's sites have to report (the gate window plus a heartbeat)")
	*f.timeout = 0
	pos, err := f.parse(args)
	if err != nil {
		return 2
	}
	if *f.group == "" || len(pos) != 1 {
		return f.usage(stderr, errors.New("--group and one FILE are required"))
	}
	key := fleetconfig.GroupKey(*f.group)
	if err := fleetconfig.CheckKey(key); err != nil {
		return exitFor(err, stderr)
	}
	ws, err := fleetconfig.ParseWaves(*waves)
	if err != nil {
		return exitFor(err, stderr)
	}
	ab, err := fleetconfig.ParsePercent(*abortOn)
	if err != nil {
		return exitFor(fmt.Errorf("--abort-on: %w", err), stderr)
	}
	data, err := readFragment(key, pos[0], stderr)
	if err != nil {
		return exitFor(err, stderr)
	}
	ctx := context.Background()
	if *f.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *f.timeout)
		defer cancel()
	}
	return f.withBucket(ctx, stderr, func(kv jetstream.KeyValue, js jetstream.JetStream) (int, error) {
		r := &fleetconfig.Rollout{KV: kv, Group: *f.group, Data: data, Waves: ws, AbortOn: ab, Reports: hubops.FleetReports(js, *f.prefix), Wait: *wait, Out: stdout}
		return 0, r.Run(ctx)
	})
}

// configColumn is the fleet table's CONFIG cell: the applied revision and
// the state when it is not applied; "-" for a site without remote config.
func configColumn(r *fleetconfig.Report) string {
	if r == nil {
		return "-"
	}
	c := fmt.Sprintf("rev %d", r.AppliedRev)
	if r.State != fleetconfig.StateApplied {
		c += " " + r.State
	}
	return c
}

// renderConfigDrift lists, under the fleet table, the sites not on the
// latest revision of their keys and why; silent when the hub has no
// config bucket (remote config unused).
func renderConfigDrift(ctx context.Context, w io.Writer, js jetstream.JetStream, prefix string) {
	kv, err := js.KeyValue(ctx, fleetconfig.Bucket)
	if err != nil {
		return
	}
	st, err := configStatus(ctx, kv, js, prefix)
	if err != nil {
		fmt.Fprintf(w, "config drift: unknown (%v)\n", err)
		return
	}
	for _, s := range st {
		if s.Drift == "" {
			continue
		}
		fmt.Fprintf(w, "config drift: %s applied rev %d of %d: %s\n", s.Site, s.AppliedRev, s.Latest, s.Drift)
	}
}
