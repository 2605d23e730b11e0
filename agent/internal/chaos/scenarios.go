package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/edge-agent/edge-agent/agent/client"
	"github.com/edge-agent/edge-agent/buffer"
	"github.com/edge-agent/edge-agent/internal/powercut"
	"github.com/edge-agent/edge-agent/uplink/wire"
)

// scenario is one row of the report: a fault repeated for a number of
// cycles while the publisher runs.
type scenario struct {
	name        string
	full, quick int // cycles
	hubNodes    int
	proxy       bool   // WAN through a fault proxy
	sync        string // buffer.sync
	diskSize    int64  // >0: state_dir on an ext4 loop disk (root only)
	// lossOK: acked messages lost to this fault are the documented
	// trade-off (sync interval power cut): reported, not failed.
	lossOK bool
	// localLossOK: the fault destroys local data (truncated file) that the
	// hub already holds; local loss is reported, hub loss still fails.
	localLossOK bool
	// damageOK: the fault destroys readings the hub never had; each cycle
	// fails unless the agent reports exactly those as lost (hostile group).
	damageOK bool
	// age is buffer.max_age ("" for the agent's default); testClock runs
	// the agent with EDGE_AGENT_TEST_CLOCK_FILE (env.clockFile).
	age       string
	testClock bool
	// bandwidth is uplink.bandwidth ("" for none): the forwarder paces
	// itself on the bytes its link gate counts.
	bandwidth string
	fault     func(ctx context.Context, e *env, cycle int) error
}

func (s *scenario) maxAge() string {
	if s.age != "" {
		return s.age
	}
	return buffer.DefaultConfig().MaxAge.String()
}

func (s *scenario) uplinkBandwidth() string {
	if s.bandwidth != "" {
		return s.bandwidth
	}
	return "0"
}

func (s *scenario) maxBytes() string {
	if s.diskSize > 0 {
		return "8MiB" // the JetStream budget must fit the small disk
	}
	return "256MiB"
}

func (s *scenario) needsRoot() bool { return s.diskSize > 0 }

func scenarios() []*scenario {
	one := func(name string, full, quick int, f func(context.Context, *env, int) error) *scenario {
		return &scenario{name: name, full: full, quick: quick, hubNodes: 1, sync: "always", fault: f}
	}
	wan := func(name string, f func(context.Context, *env, int) error) *scenario {
		s := one(name, 10, 1, f)
		s.proxy = true
		return s
	}
	pc := func(name, sync string, quick int, lossOK bool) *scenario {
		s := one(name, 50, quick, powerCut)
		s.sync, s.diskSize, s.lossOK, s.localLossOK = sync, 64<<20, lossOK, lossOK
		return s
	}
	disk := one("disk-full", 5, 1, diskFull)
	disk.diskSize = 64 << 20
	nodeLoss := one("hub-node-loss", 5, 1, hubNodeLoss)
	nodeLoss.hubNodes = 3
	trunc := one("truncated-block", 10, 2, truncatedBlock)
	trunc.localLossOK = true
	// A metered link (16 KiB/s on the wire) that is cut: the backlog of
	// each cut drains through the cap.
	cut := func(p proxy) error { p.Cut(); return nil }
	metered := wan("wan-metered", wanFault(true, cut))
	metered.bandwidth = "16KiB"
	// Hostile: damage in the unforwarded tail at a random offset.
	tail := wan("hostile-tail-damage", tailDamage)
	tail.full, tail.quick, tail.damageOK = 10, 2, true
	clock := one("clock-jump", 5, 1, clockJump)
	// 30m: every forward step (+1h, +30 days, 1970 -> now) exceeds it, and
	// a full run stays well under it in agent time (no genuine expiry).
	clock.age, clock.testClock = "30m", true
	// Hostile: parties around the site, not faults of the device.
	restore := one("hostile-restore", 6, 2, restoreCopy)
	restore.localLossOK = true
	return []*scenario{
		one("kill-9", 200, 10, kill9),
		pc("powercut-always", "always", 3, false),
		pc("powercut-1s", "1s", 2, true),
		wan("wan-cut", wanFault(true, cut)),
		wan("wan-unplug", wanFault(true, func(p proxy) error { return p.Unplug() })),
		wan("wan-reset", wanFault(false, func(p proxy) error { return p.Reset() })),
		wan("wan-blackhole", wanFault(true, func(p proxy) error { return p.Blackhole() })),
		wan("wan-latency-200ms", wanFault(false, func(p proxy) error { return p.Shape(200*time.Millisecond, 0) })),
		wan("wan-1mbit", wanFault(false, func(p proxy) error { return p.Shape(0, 125_000) })),
		metered,
		one("hub-restart", 10, 2, hubRestart),
		nodeLoss,
		disk,
		one("corrupt-state-db", 10, 2, corruptStateDB),
		trunc,
		clock,
		restore,
		tail,
	}
}

// kill9 kills the agent at a random point: under load (mid-publish and,
// with a backlog, mid-forward) or, one cycle in four, during startup.
func kill9(ctx context.Context, e *env, _ int) error {
	if !e.startupKill {
		sleep(ctx, e.between(100*time.Millisecond, 1500*time.Millisecond))
	}
	e.agent.kill()
	e.startupKill = e.rng.IntN(4) == 0
	if !e.startupKill {
		return e.restart(ctx, "kill -9")
	}
	if err := e.agent.start(); err != nil {
		return err
	}
	sleep(ctx, e.between(0, 400*time.Millisecond))
	return nil
}

// proxy is the part of wanfault.Proxy a WAN fault uses.
type proxy interface {
	Cut()
	Unplug() error
	Reset() error
	Blackhole() error
	Shape(latency time.Duration, bytesPerSec int64) error
}

// wanFault applies a fault to the link for a while under load, then heals
// it and measures until data sent after the heal is at the hub. For faults
// that stop traffic (blocks), it also checks nothing sent during the fault
// arrived: otherwise the link bypasses the proxy and the row proves nothing.
func wanFault(blocks bool, apply func(proxy) error) func(context.Context, *env, int) error {
	return func(ctx context.Context, e *env, _ int) error {
		p := e.proxies[0]
		if err := apply(p); err != nil {
			return err
		}
		if blocks && e.opts.hubAudit {
			sleep(ctx, 300*time.Millisecond) // what was in flight before the fault
			during := e.e2e.arm(time.Now())
			sleep(ctx, e.opts.faultFor)
			select {
			case <-during:
				return errors.New("data sent during the fault reached the hub: the leaf connection does not go through the fault proxy")
			default:
			}
		} else {
			sleep(ctx, e.opts.faultFor)
		}
		p.Clear()
		if err := p.Restore(); err != nil {
			return err
		}
		heal := time.Now()
		return e.await(ctx, e.arm(heal), heal, "the WAN fault")
	}
}

func hubRestart(ctx context.Context, e *env, _ int) error {
	e.hub.stop(0)
	sleep(ctx, e.opts.faultFor)
	heal := time.Now()
	ch := e.arm(heal)
	if err := e.hub.start(0); err != nil {
		return err
	}
	return e.await(ctx, ch, heal, "the hub restart")
}

// hubNodeLoss stops the node holding the leaf connection: recovery is the
// failover to the other nodes, measured from the loss.
func hubNodeLoss(ctx context.Context, e *env, _ int) error {
	deadline := time.Now().Add(30 * time.Second)
	n := e.hub.leafNode()
	for ; n < 0 && time.Now().Before(deadline); n = e.hub.leafNode() {
		sleep(ctx, 100*time.Millisecond)
	}
	if n < 0 {
		return errors.New("no hub node has the leaf connection after 30s")
	}
	heal := time.Now()
	ch := e.arm(heal)
	e.hub.stop(n)
	if err := e.await(ctx, ch, heal, fmt.Sprintf("losing hub node %d", n)); err != nil {
		return err
	}
	if err := e.hub.start(n); err != nil {
		return err
	}
	return waitReplicasCurrent(ctx, e.hubJS, 60*time.Second)
}

// waitReplicasCurrent waits until every replica of EDGE caught up, so the
// next node loss never takes the last current copy.
func waitReplicasCurrent(ctx context.Context, js jetstream.JetStream, d time.Duration) error {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		s, err := js.Stream(cctx, hubStream)
		cancel()
		if err == nil {
			ci := s.CachedInfo().Cluster
			ok := ci != nil && ci.Leader != ""
			for _, r := range ci.Replicas {
				ok = ok && r.Current
			}
			if ok {
				return nil
			}
		}
		sleep(ctx, 200*time.Millisecond)
	}
	return fmt.Errorf("hub stream %s replicas not current %s after a node restart", hubStream, d)
}

// diskFull fills the agent's filesystem while it runs, frees it, and
// expects the agent to survive and store again.
func diskFull(ctx context.Context, e *env, cycle int) error {
	filler := filepath.Join(e.stateDir(), fmt.Sprintf("chaos-filler-%d", cycle))
	f, err := os.Create(filler)
	if err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	for {
		if _, err = f.Write(buf); err != nil {
			break
		}
	}
	f.Close()
	if !errors.Is(err, syscall.ENOSPC) {
		return fmt.Errorf("filling the disk: %w", err)
	}
	sleep(ctx, e.opts.faultFor)
	if !e.agent.running() {
		return fmt.Errorf("agent exited on a full disk (%v); log %s:\n%s", e.agent.err, e.agent.logPath, e.agent.logTail())
	}
	if err := os.Remove(filler); err != nil {
		return err
	}
	heal := time.Now()
	return e.await(ctx, e.arm(heal), heal, "freeing the full disk")
}

// corruptStateDB kills the agent and overwrites random pages of state.db.
func corruptStateDB(ctx context.Context, e *env, _ int) error {
	sleep(ctx, e.between(200*time.Millisecond, time.Second))
	e.agent.kill()
	path := filepath.Join(e.stateDir(), "state.db")
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("open %s to damage it: %w", path, err)
	}
	fi, err := f.Stat()
	if err == nil && fi.Size() >= 4096 {
		page := make([]byte, 4096)
		for range 3 {
			if _, err = io.ReadFull(rand.Reader, page); err != nil {
				break
			}
			if _, err = f.WriteAt(page, 4096*e.rng.Int64N(fi.Size()/4096)); err != nil {
				break
			}
		}
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("damage %s: %w", path, err)
	}
	return e.restart(ctx, "corrupting state.db")
}

// loadDrainKill publishes for a while, lets the forwarder drain with the
// publisher paused, fails with stuckFmt (given the count) when acked
// messages did not reach the hub, then kills the agent and resumes
// publishing: the state directory is then the harness's to damage.
func (e *env) loadDrainKill(ctx context.Context, stuckFmt string) error {
	sleep(ctx, e.between(time.Second, 3*time.Second))
	e.pub.pause(true)
	sleep(ctx, 500*time.Millisecond) // in-flight publishes finish
	local, hubc, err := e.drain(ctx)
	if err != nil {
		return err
	}
	if hubc != nil {
		if v := judge(e.pub.ackedIDs(), local, hubc); v.stuck > 0 {
			return fmt.Errorf(stuckFmt, v.stuck)
		}
	}
	e.agent.kill()
	e.pub.pause(false)
	return nil
}

// truncatedBlock cuts the newest TELEMETRY block file short, as a failing
// SD card or a bad fsck might. The hub holds the data first, so nothing
// acknowledged may be lost there, and readings stored after the damage must
// still reach the hub (a reused sequence must not be taken for a duplicate).
func truncatedBlock(ctx context.Context, e *env, _ int) error {
	// Load first, so the block's tail holds the harness's acked messages.
	// Truncating with acked messages stuck could not tell old damage from
	// new: stop there.
	if err := e.loadDrainKill(ctx, "%d acked messages in the local streams did not reach the hub before the truncation (the previous cycle left the forwarder stuck)"); err != nil {
		return err
	}
	last, size, err := e.newestBlock()
	if err != nil {
		return err
	}
	to := size * (30 + e.rng.Int64N(60)) / 100
	if err := os.Truncate(last, to); err != nil {
		return err
	}
	e.logf("truncated %s from %d to %d bytes", last, size, to)
	return e.restart(ctx, "truncating "+filepath.Base(last))
}

// tailDamage cuts the WAN so readings pile up unforwarded, stops the agent
// cleanly, overwrites 2 KiB at a random offset of the newest TELEMETRY
// block and starts it again. Every acknowledged reading the damage took
// must be in a loss the agent reports (status, with stream and sequence
// range); those are acknowledged with ack-loss before the next cycle.
func tailDamage(ctx context.Context, e *env, _ int) error {
	p := e.proxies[0]
	p.Cut()
	sleep(ctx, e.between(time.Second, 3*time.Second))
	e.pub.pause(true)
	defer e.pub.pause(false)
	sleep(ctx, 500*time.Millisecond) // in-flight publishes finish
	acked := e.pub.ackedIDs()
	held, err := readLocal(ctx, e.agent.url) // earlier cycles' losses are not this one's
	if err != nil {
		return err
	}
	if err := e.agent.stop(30 * time.Second); err != nil {
		return fmt.Errorf("stop before the damage: %w", err)
	}
	last, size, err := e.newestBlock()
	if err != nil {
		return err
	}
	if size < 4096 {
		return fmt.Errorf("%s holds %d bytes: too little load to damage", last, size)
	}
	buf, err := os.ReadFile(last)
	if err != nil {
		return err
	}
	off := e.rng.IntN(len(buf) - 2048)
	if _, err := io.ReadFull(rand.Reader, buf[off:off+2048]); err != nil {
		return err
	}
	if err := os.WriteFile(last, buf, 0o640); err != nil {
		return err
	}
	e.logf("overwrote 2 KiB of %s (%d bytes) at %d", last, len(buf), off)
	if err := e.agent.start(); err != nil {
		return err
	}
	if err := e.agent.waitReady(ctx, 60*time.Second); err != nil {
		return err
	}
	local, err := readLocal(ctx, e.agent.url)
	if err != nil {
		return err
	}
	// The client port answers before the control socket exists.
	socket := filepath.Join(e.dir, "agent.sock")
	st, err := client.FetchStatus(ctx, socket)
	for deadline := time.Now().Add(30 * time.Second); errors.Is(err, client.ErrNotRunning) && time.Now().Before(deadline); {
		sleep(ctx, 50*time.Millisecond)
		st, err = client.FetchStatus(ctx, socket)
	}
	if err != nil {
		return err
	}
	inLoss := func(ss streamSeq) bool {
		for _, l := range st.Store.Losses {
			if l.Stream == ss.stream && ss.seq >= l.From && ss.seq <= l.To {
				return true
			}
		}
		return false
	}
	// Damage in the part already forwarded costs nothing the hub lacks:
	// those are not losses to report.
	atHub := newContents()
	if e.opts.hubAudit {
		if atHub, err = readHub(ctx, e.hubJS, e.site); err != nil {
			return err
		}
	}
	lost, unreported := 0, 0
	for _, id := range acked {
		if local.ids[id] > 0 || held.ids[id] == 0 || atHub.ids[id] > 0 {
			continue
		}
		lost++
		if !inLoss(e.pub.storedAt(id)) {
			unreported++
		}
	}
	var reported uint64
	for _, l := range st.Store.Losses {
		reported += l.Count
	}
	e.note("damage at %d of %s: %d acked readings lost, %d in the %d reported (%d messages with the sensor's)", off, filepath.Base(last), lost, lost-unreported, len(st.Store.Losses), reported)
	if unreported > 0 {
		return fmt.Errorf("%d acked readings the damage took are not in a reported loss (%+v)", unreported, st.Store.Losses)
	}
	if st.State != wire.Down && lost > 0 {
		return fmt.Errorf("status %s with %d acked readings lost: want down until ack-loss", st.State, lost)
	}
	if _, err := client.AckLoss(ctx, socket); err != nil {
		return err
	}
	p.Clear()
	if err := p.Restore(); err != nil {
		return err
	}
	heal := time.Now()
	e.pub.pause(false)
	return e.await(ctx, e.arm(heal), heal, "the tail damage")
}

// newestBlock is the TELEMETRY block file JetStream writes to now, the
// highest-numbered one (numbers, not names, order them: 10.blk after
// 9.blk), and its size.
func (e *env) newestBlock() (path string, size int64, err error) {
	blks, _ := filepath.Glob(filepath.Join(e.stateDir(), "jetstream", "*", "streams", "TELEMETRY", "msgs", "*.blk"))
	if len(blks) == 0 {
		return "", 0, fmt.Errorf("no TELEMETRY block files under %s", e.stateDir())
	}
	num := func(path string) int {
		var n int
		fmt.Sscanf(filepath.Base(path), "%d.blk", &n)
		return n
	}
	sort.Slice(blks, func(i, j int) bool { return num(blks[i]) < num(blks[j]) })
	path = blks[len(blks)-1]
	fi, err := os.Stat(path)
	if err != nil {
		return "", 0, err
	}
	return path, fi.Size(), nil
}

// powerCut freezes the agent, snapshots the disk as the device would hold
// it (unsynced writes gone), kills the agent and boots it on the snapshot.
func powerCut(ctx context.Context, e *env, cycle int) error {
	restore, err := powercut.HoldWriteback()
	if err != nil {
		return err
	}
	sleep(ctx, e.between(300*time.Millisecond, 1500*time.Millisecond))
	// SIGSTOP first: no write and no ack after the instant of the cut.
	e.agent.signal(syscall.SIGSTOP)
	e.cuts = append(e.cuts, time.Now())
	snap := filepath.Join(e.dir, fmt.Sprintf("cut-%d.img", cycle))
	err = e.disk.Cut(snap)
	err = errors.Join(err, restore())
	e.agent.kill()
	old := e.disk.Image
	err = errors.Join(err, e.disk.Close())
	e.disk = nil
	if err != nil {
		return err
	}
	if err := os.Remove(old); err != nil {
		return err
	}
	if e.disk, err = powercut.Mount(snap, e.stateDir()); err != nil {
		return fmt.Errorf("boot the cut image: %w", err)
	}
	return e.restart(ctx, "the power cut")
}

// clockFile is the agent's test clock (EDGE_AGENT_TEST_CLOCK_FILE).
func (e *env) clockFile() string { return filepath.Join(e.dir, "clock") }

// clockSteps are what one clock-jump cycle writes, in order, and how long
// each stays. The agent is killed and restarted at the end of the +30 days
// step, so a start also meets a jumped clock (and the downtime rule: an
// offset clock counts as unsynchronised, so the downtime is not counted).
// The -1h hold outlasts the ager's tick at max_age 30m (1 min), so the
// agent killed under +30 days left a checkpoint that is 30 days old by the
// wall clock: an age limit on the wall clock purges by it at the restart.
var clockSteps = []struct {
	offset  string
	hold    time.Duration
	restart bool
}{
	{"+1h", 5 * time.Second, false},
	{"-1h", 65 * time.Second, false},
	{"+720h", 5 * time.Second, true},
	{"1970-01-01T00:00:00Z", 5 * time.Second, false}, // a gateway without RTC
	{"0", 0, false},
}

// clockJump steps the running agent's wall clock while the publisher runs,
// with buffer.max_age 30m: an age limit measured on the wall clock would
// purge the local streams at the +30 days step (and at the restart under
// it), which the audit counts as local loss. Each step waits until the
// agent logs the jump, so the row proves the clock reached the agent.
func clockJump(ctx context.Context, e *env, _ int) error {
	for _, st := range clockSteps {
		seen := countInFile(e.agent.logPath, "wall clock jumped")
		sleep(ctx, e.between(300*time.Millisecond, time.Second))
		if err := os.WriteFile(e.clockFile(), []byte(st.offset+"\n"), 0o644); err != nil {
			return err
		}
		deadline := time.Now().Add(30 * time.Second)
		for countInFile(e.agent.logPath, "wall clock jumped") == seen {
			if time.Now().After(deadline) || ctx.Err() != nil {
				return fmt.Errorf("the agent did not log a wall-clock jump within 30s of the test clock going to %s (is %s honoured?); log %s", st.offset, "EDGE_AGENT_TEST_CLOCK_FILE", e.agent.logPath)
			}
			sleep(ctx, 200*time.Millisecond)
		}
		e.logf("clock %s seen by the agent", st.offset)
		sleep(ctx, st.hold)
		if st.restart {
			e.agent.kill()
			if err := e.restart(ctx, "kill -9 under a clock at "+st.offset); err != nil {
				return err
			}
		}
	}
	return nil
}

// countInFile counts the lines of path containing s (0 if unreadable).
func countInFile(path, s string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	return strings.Count(string(b), s)
}

// restoreCopy puts an earlier copy of state_dir back, as restoring a backup
// or putting an old SD card back does: a live copy of the running agent
// (even cycles) or one taken after a graceful stop. The original runs on
// and forwards meanwhile; everything acked reaches the hub before the
// restore (what came after the copy is then gone locally only, which is
// the restore's doing). Readings stored after the restore must reach the
// hub too: their message ids must not be ones the hub saw after the copy.
func restoreCopy(ctx context.Context, e *env, cycle int) error {
	sleep(ctx, e.between(500*time.Millisecond, 2*time.Second))
	backup := filepath.Join(e.dir, "backup")
	if err := os.RemoveAll(backup); err != nil {
		return err
	}
	live := cycle%2 == 0
	if !live {
		if err := e.agent.stop(30 * time.Second); err != nil {
			return err
		}
	}
	if err := os.CopyFS(backup, os.DirFS(e.stateDir())); err != nil {
		return fmt.Errorf("copy %s: %w", e.stateDir(), err)
	}
	if !live {
		if err := e.restart(ctx, "a graceful stop for a backup"); err != nil {
			return err
		}
	}
	if err := e.loadDrainKill(ctx, "%d acked messages did not reach the hub before the restore"); err != nil {
		return err
	}
	if err := os.RemoveAll(e.stateDir()); err != nil {
		return err
	}
	if err := os.Rename(backup, e.stateDir()); err != nil {
		return err
	}
	e.logf("restored a %s copy of %s", map[bool]string{true: "live", false: "clean-stop"}[live], e.stateDir())
	return e.restart(ctx, "restoring a copy of state_dir")
}
