// Command chaos is `make chaos`: it builds edge-agent, runs it as a real
// process against an in-process hub, injects faults (kill -9, power cuts,
// WAN faults, hub restarts and node loss, a full disk, damaged files) while
// a local publisher logs every acknowledged message id, then audits the
// hub stream EDGE and the local streams against that log.
//
// It exits 1 if any acknowledged message is lost or duplicated, except the
// loss a power cut causes under `buffer.sync: <interval>`, which is the
// documented trade-off of that setting and is reported instead.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/rs/zerolog"

	"github.com/edge-agent/edge-agent/internal/powercut"
)

type options struct {
	quick         bool
	bin           string
	dir           string
	keep          bool
	verbose       bool
	hubAudit      bool
	cycles        int
	seed          uint64
	faultFor      time.Duration
	reconnect     string // the agent's uplink.reconnect, YAML flow mapping
	recoveryLimit time.Duration
	drainLimit    time.Duration
}

// result is one row of the report.
type result struct {
	name     string
	cycles   int
	v        verdict
	lost     int
	dup      int
	recovery time.Duration
	notes    []string
	err      error // the scenario could not complete: a failure
	skipped  string
	failed   bool
	took     time.Duration
}

func main() {
	// toxiproxy (wanfault) logs through zerolog's global logger; a program
	// sets its own global log level, the wanfault library does not.
	zerolog.SetGlobalLevel(zerolog.Disabled)
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("chaos", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := &options{}
	fs.BoolVar(&o.quick, "quick", false, "CI-sized run: a few cycles per scenario (under 5 minutes)")
	fs.StringVar(&o.bin, "bin", "", "edge-agent binary to test (default: go build ./agent/cmd/edge-agent)")
	fs.StringVar(&o.dir, "dir", "", "work directory (default: a temporary one, removed unless something failed or -keep)")
	fs.BoolVar(&o.keep, "keep", false, "keep the work directory (agent logs, ack logs, configs)")
	fs.BoolVar(&o.verbose, "v", false, "log progress")
	localOnly := fs.Bool("local-only", false, "audit only the local streams (for a build without a forwarder)")
	only := fs.String("run", "", "regexp: run only matching scenarios")
	fs.IntVar(&o.cycles, "cycles", 0, "cycles per scenario (default: the scenario's full or quick count)")
	fs.Uint64Var(&o.seed, "seed", 0, "random seed (default: time based; printed for reruns)")
	fs.DurationVar(&o.faultFor, "fault-for", 0, "how long a lasting fault stays (default 2s quick, 5s full)")
	// Quick retries keep a cycle short; the shipped backoff shows what a
	// site sees after a long fault (e.g. -run wan-unplug -fault-for 30s).
	fs.StringVar(&o.reconnect, "reconnect", "{min: 100ms, max: 1s}", "the agent's uplink.reconnect; {min: 1s, max: 60s} is the shipped default")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	o.hubAudit = !*localOnly
	if o.seed == 0 {
		o.seed = uint64(time.Now().UnixNano())
	}
	if o.faultFor == 0 {
		o.faultFor = map[bool]time.Duration{true: 2 * time.Second, false: 5 * time.Second}[o.quick]
	}
	o.recoveryLimit, o.drainLimit = 90*time.Second, 3*time.Minute
	if o.quick {
		o.drainLimit = 45 * time.Second
	}
	re, err := regexp.Compile(*only)
	if err != nil {
		fmt.Fprintf(stderr, "chaos: -run: %v\n", err)
		return 2
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	start := time.Now()
	cleanup, err := o.prepare(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "chaos: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "chaos: binary %s, work dir %s, seed %d, %s run\n", o.bin, o.dir, o.seed, map[bool]string{true: "quick", false: "full"}[o.quick])

	var results []*result
	for _, sc := range scenarios() {
		if !re.MatchString(sc.name) || ctx.Err() != nil {
			continue
		}
		r := runScenario(ctx, o, sc)
		results = append(results, r)
		fmt.Fprintf(stderr, "chaos: %-18s %s in %s\n", sc.name, r.status(), r.took.Round(time.Second))
	}
	failed := report(stdout, results, o)
	fmt.Fprintf(stdout, "\nchaos: %d scenarios in %s\n", len(results), time.Since(start).Round(time.Second))
	if failed || ctx.Err() != nil {
		fmt.Fprintf(stdout, "chaos: FAILED; agent logs, configs and ack logs are in %s\n", o.dir)
		return 1
	}
	cleanup()
	return 0
}

// prepare makes the work directory and builds the binary.
func (o *options) prepare(ctx context.Context) (cleanup func(), err error) {
	cleanup = func() {}
	if o.dir == "" {
		if o.dir, err = os.MkdirTemp("", "edge-chaos-"); err != nil {
			return nil, err
		}
		if !o.keep {
			cleanup = func() { _ = os.RemoveAll(o.dir) }
		}
	}
	if o.bin == "" {
		o.bin = filepath.Join(o.dir, "edge-agent")
		cmd := exec.CommandContext(ctx, "go", "build", "-o", o.bin, "./agent/cmd/edge-agent")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return nil, fmt.Errorf("go build ./agent/cmd/edge-agent (run from the repository root): %w", err)
		}
	}
	return cleanup, nil
}

func runScenario(ctx context.Context, o *options, sc *scenario) *result {
	r := &result{name: sc.name, cycles: sc.quick}
	if !o.quick {
		r.cycles = sc.full
	}
	if o.cycles > 0 {
		r.cycles = o.cycles
	}
	if sc.needsRoot() {
		if err := powercut.Available(); err != nil {
			r.skipped = err.Error()
			return r
		}
	}
	start := time.Now()
	defer func() { r.took = time.Since(start) }()
	e := &env{opts: o, sc: sc, dir: filepath.Join(o.dir, sc.name), site: "chaos-" + sc.name,
		rng: rand.New(rand.NewPCG(o.seed, uint64(len(sc.name))))}
	defer e.close()
	if err := os.MkdirAll(e.dir, 0o755); err != nil {
		r.err = err
		return r
	}
	pctx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	if err := e.setup(pctx); err != nil {
		r.err = fmt.Errorf("setup: %w", err)
		return r
	}
	done := 0
	for i := 0; i < r.cycles && ctx.Err() == nil; i++ {
		e.logf("cycle %d/%d", i+1, r.cycles)
		if err := sc.fault(pctx, e, i); err != nil {
			r.err = fmt.Errorf("cycle %d: %w", i+1, err)
			break
		}
		done++
	}
	r.cycles = done
	if err := e.heal(pctx); err != nil && r.err == nil {
		r.err = fmt.Errorf("final heal: %w", err)
	}
	sleep(ctx, time.Second) // some traffic after the last heal
	stopLoad()
	if err := e.pub.close(); err != nil && r.err == nil {
		r.err = err
	}
	if r.err != nil && !e.agent.running() {
		return r
	}
	local, hubc, err := e.drain(ctx)
	if err != nil {
		r.err = errors.Join(r.err, fmt.Errorf("audit: %w", err))
		return r
	}
	r.v = judge(e.pub.ackedIDs(), local, hubc)
	r.lost, r.dup = r.v.localLost, r.v.localDup+r.v.hubDup
	if o.hubAudit {
		r.lost = r.v.hubLost
	}
	r.recovery = e.recovery
	r.notes = e.notes
	if r.v.localLost > 0 {
		r.notes = append(r.notes, fmt.Sprintf("%d acked messages gone from the local streams", r.v.localLost))
	}
	if r.v.stuck > 0 {
		r.notes = append(r.notes, fmt.Sprintf("%d acked messages are in the local streams but never reached the hub (forwarder)", r.v.stuck))
	}
	if sc.lossOK {
		beyond, oldest := e.lossBeyondInterval(local)
		// Interval mode trades acknowledged data for SD wear: its loss is
		// reported, with its age, and never fails the run (the rule:
		// "interval loss is reported, always must be 0"). Loss older than the
		// interval is called out because docs/GUARANTEES.md must not promise less.
		r.notes = append(r.notes, fmt.Sprintf("sync %s: %d acked messages lost locally over %d cuts (documented trade-off); the oldest was acked %s before its cut; %d acked more than the interval + 1s before",
			sc.sync, r.v.localLost, len(e.cuts), oldest.Round(time.Millisecond), beyond))
	}
	if r.v.notForwarded > 0 {
		r.notes = append(r.notes, fmt.Sprintf("%d local messages (readings included) never reached the hub", r.v.notForwarded))
	}
	if r.v.hubExtra > 0 {
		r.notes = append(r.notes, fmt.Sprintf("%d extra hub copies of one local message", r.v.hubExtra))
	}
	if f := e.pub.failures(); f > 0 {
		r.notes = append(r.notes, fmt.Sprintf("%d publishes not acked (agent down or disk full: never in the ack log)", f))
	}
	if err := e.agent.stop(30 * time.Second); err != nil && r.err == nil {
		r.err = fmt.Errorf("graceful stop after the run: %w", err)
	}
	r.failed = r.err != nil || r.dup > 0 || r.v.hubExtra > 0 || r.v.stuck > 0 ||
		(r.lost > 0 && !sc.lossOK && !sc.damageOK) || (r.v.localLost > 0 && !sc.localLossOK && !sc.damageOK)
	return r
}

func (r *result) status() string {
	switch {
	case r.skipped != "":
		return "skipped"
	case r.failed || r.err != nil:
		return "FAIL"
	}
	return "ok"
}

// report prints the table and the findings; it returns whether anything failed.
func report(w io.Writer, results []*result, o *options) bool {
	failed := false
	hubCol := "delivered at hub"
	if !o.hubAudit {
		hubCol = "at hub (not audited)"
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "scenario\tcycles\tacked\t%s\tlost\tduplicated\tmax recovery\tresult\t\n", hubCol)
	for _, r := range results {
		if r.skipped != "" {
			fmt.Fprintf(tw, "%s\t-\t-\t-\t-\t-\t-\tskipped\t\n", r.name)
			continue
		}
		failed = failed || r.failed || r.err != nil
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%s\t%s\t\n", r.name, r.cycles, r.v.acked, r.v.atHub, r.lost, r.dup, r.recovery.Round(10*time.Millisecond), r.status())
	}
	tw.Flush()
	for _, r := range results {
		var lines []string
		if r.skipped != "" {
			lines = append(lines, "skipped: "+r.skipped)
		}
		if r.err != nil {
			lines = append(lines, "ERROR: "+r.err.Error())
		}
		lines = append(lines, r.notes...)
		if len(lines) > 0 {
			fmt.Fprintf(w, "\n%s:\n  %s\n", r.name, strings.Join(lines, "\n  "))
		}
	}
	fmt.Fprint(w, notCovered)
	return failed
}

// notCovered is printed with every report so a green run is never read as
// more than it proves.
const notCovered = `
Not covered by this harness:
  clock jumps reach the agent's own clock only (EDGE_AGENT_TEST_CLOCK_FILE:
  buffer.max_age enforcement, reading timestamps), not the machine's: the Go
  runtime reads wall time through the vDSO, which neither faketime nor
  LD_PRELOAD reach, and stepping the machine's clock would disturb every
  other process. The local streams have no JetStream MaxAge, so nats-server's
  own wall clock expires nothing; its duplicate window and timers, and the
  hub's, are not exercised across a real step.
`
