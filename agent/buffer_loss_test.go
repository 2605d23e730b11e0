package agent

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edge-agent/edge-agent/buffer"
	"github.com/edge-agent/edge-agent/internal/testkit"
	"github.com/edge-agent/edge-agent/uplink/hubops"
	"github.com/edge-agent/edge-agent/uplink/wire"
)

// lastBlock is the highest-numbered block file of one of the agent's streams.
func lastBlock(t *testing.T, dir, stream string) string {
	t.Helper()
	blks, err := filepath.Glob(filepath.Join(dir, "jetstream", "$G", "streams", stream, "msgs", "*.blk"))
	if err != nil || len(blks) == 0 {
		t.Fatalf("no block files for %s: %v", stream, err)
	}
	slices.SortFunc(blks, func(a, b string) int { return cmpLen(a, b) })
	return blks[len(blks)-1]
}

func cmpLen(a, b string) int {
	if len(a) != len(b) {
		return len(a) - len(b)
	}
	return strings.Compare(a, b)
}

// damageFile overwrites n bytes of path at off.
func damageFile(t *testing.T, path string, off, n int) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	copy(b[off:], bytes.Repeat([]byte{0xA5}, n))
	if err := os.WriteFile(path, b, 0o640); err != nil {
		t.Fatal(err)
	}
}

// missingSeqs lists 1..n minus have.
func missingSeqs(n uint64, have []uint64) []uint64 {
	var out []uint64
	for q := uint64(1); q <= n; q++ {
		if _, ok := slices.BinarySearch(have, q); !ok {
			out = append(out, q)
		}
	}
	return out
}

// Damage in the unforwarded part of a stream (no uplink, so nothing was
// forwarded) after a clean stop: 2 KiB overwritten in the middle of the
// last block, or at its end, with and without the server's index.db (a
// crash leaves it stale or missing). Every record after the damaged bytes
// is salvaged; the loss is reported exactly (count, range, stream) in
// status (critical), the log, metrics and the heartbeat; it survives a
// restart and is cleared by `edge-agent buffer ack-loss`, while the
// running total stays.
func TestBufferTailDamageReported(t *testing.T) {
	for _, tc := range []struct {
		name    string
		at      func(size int64) int64
		noIndex bool
		salvage bool // readings after the damaged bytes survive
	}{
		{"middle", func(size int64) int64 { return size / 2 }, false, true},
		{"middle without index.db", func(size int64) int64 { return size / 3 }, true, true},
		{"end", func(size int64) int64 { return size - 2048 }, false, false},
		{"end without index.db", func(size int64) int64 { return size - 2048 }, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) { tailDamage(t, tc.at, tc.noIndex, tc.salvage) })
	}
}

func tailDamage(t *testing.T, at func(int64) int64, noIndex, salvage bool) {
	const n = 5000
	dir := t.TempDir()
	a := agentOn(t, dir, "")
	publishLocal(t, a, "telemetry.t", n)
	if err := a.stop(); err != nil {
		t.Fatal(err)
	}
	blk := lastBlock(t, dir, buffer.StreamTelemetry)
	fi, err := os.Stat(blk)
	if err != nil {
		t.Fatal(err)
	}
	damageFile(t, blk, int(at(fi.Size())), 2048)
	if noIndex {
		if err := os.Remove(filepath.Join(filepath.Dir(blk), "index.db")); err != nil {
			t.Fatal(err)
		}
	}

	a = agentOn(t, dir, "")
	seqs := testkit.StreamSeqs(t, localJS(t, a), buffer.StreamTelemetry)
	lost := missingSeqs(n, seqs)
	recSize := fi.Size() / n
	t.Logf("%d of %d readings left after 2 KiB of damage (records of ~%d bytes): lost %d..%d", len(seqs), n, recSize, lost[0], lost[len(lost)-1])
	if len(lost) == 0 || int64(len(lost)) > 2048/recSize+2 {
		t.Fatalf("%d readings lost to 2 KiB of damage in ~%d-byte records: the rest of the block was not salvaged", len(lost), recSize)
	}
	if lost[len(lost)-1]-lost[0]+1 != uint64(len(lost)) || salvage == (lost[len(lost)-1] == n) {
		t.Fatalf("lost sequences %v: want one run, salvage after it %v", lost, salvage)
	}
	want := buffer.Loss{Stream: buffer.StreamTelemetry, From: lost[0], To: lost[len(lost)-1], Count: uint64(len(lost))}
	checkLoss := func(a *testAgent) Status {
		t.Helper()
		s := a.Status(context.Background())
		if len(s.Store.Losses) != 1 {
			t.Fatalf("losses in status: %+v", s.Store.Losses)
		}
		got := s.Store.Losses[0]
		got.Cause, got.Time, got.Boot = "", time.Time{}, 0
		if got != want {
			t.Fatalf("loss recorded as %+v, want %+v", got, want)
		}
		code, w := s.Health()
		if code != ExitDown || w[0].Severity != SevCritical || !strings.Contains(w[0].Message, "LOST") || !strings.Contains(w[0].Fix, "ack-loss") {
			t.Fatalf("status %d, warnings %+v: want critical LOST with the ack-loss fix", code, w)
		}
		hb := heartbeatFromStatus(s)
		if hb.Lost != want.Count {
			t.Fatalf("heartbeat lost %d, want %d", hb.Lost, want.Count)
		}
		v := hubops.Rank([]hubops.SiteView{{Site: "s1", LastSeen: time.Now(), Heartbeat: hb}}, time.Now(), time.Hour)
		if !slices.ContainsFunc(v[0].Warnings, func(w string) bool { return strings.Contains(w, "LOST") }) {
			t.Fatalf("fleet view warnings %v lack the loss", v[0].Warnings)
		}
		return s
	}
	s := checkLoss(a)
	var m bytes.Buffer
	writeMetrics(&m, s, 0)
	if line := `edge_agent_buffer_lost_readings_total{stream="TELEMETRY"} ` + strconv.FormatUint(want.Count, 10); !strings.Contains(m.String(), line+"\n") {
		t.Fatalf("metrics lack %q:\n%s", line, m.String())
	}
	if !strings.Contains(a.logs.String(), "acknowledged messages lost to damage") {
		t.Fatalf("loss not logged:\n%s", a.logs)
	}
	if aside, _ := filepath.Glob(filepath.Join(dir, "damaged", "TELEMETRY-*")); len(aside) != 1 {
		t.Fatalf("damaged original not kept aside: %v", aside)
	}
	publishLocal(t, a, "telemetry.t", 5)
	if err := a.stop(); err != nil {
		t.Fatal(err)
	}

	// The record survives a restart (and the salvaged block is not
	// reported again), until the technician acknowledges it.
	a = agentOn(t, dir, "")
	checkLoss(a)
	r, err := AckLoss(context.Background(), a.Config().ControlSocket)
	if err != nil || len(r.Acknowledged) != 1 || r.Acknowledged[0].Count != want.Count {
		t.Fatalf("ack-loss: %+v %v", r, err)
	}
	s = a.Status(context.Background())
	if len(s.Store.Losses) != 0 || s.State == wire.Down {
		t.Fatalf("after ack-loss: state %s, losses %+v, warnings %+v", s.State, s.Store.Losses, s.Warnings)
	}
	if s.Backlog[1].Lost != want.Count {
		t.Fatalf("lost total after ack-loss: %+v", s.Backlog[1])
	}
	if err := a.stop(); err != nil {
		t.Fatal(err)
	}
	a = agentOn(t, dir, "")
	if s := a.Status(context.Background()); len(s.Store.Losses) != 0 {
		t.Fatalf("acknowledged loss back after a restart: %+v", s.Store.Losses)
	}
}

// Damage that nats-server finds while the agent runs (it reads a block
// whose cache expired, finds a bad record and truncates the block there,
// reporting no lost data) is recorded as a loss too, measured against the
// extent the watcher last recorded. Salvage only happens at start, before
// the server owns the files: here the rest of the block is gone.
func TestBufferDamageWhileRunningReported(t *testing.T) {
	const n = 5000
	dir := t.TempDir()
	a := agentOn(t, dir, "")
	publishLocal(t, a, "telemetry.t", n)
	a.buf.watcher.Check(context.Background())
	blk := lastBlock(t, dir, buffer.StreamTelemetry)
	fi, err := os.Stat(blk)
	if err != nil {
		t.Fatal(err)
	}
	damageFile(t, blk, int(fi.Size()/2), 2048)
	js := localJS(t, a)
	var seqs []uint64
	testkit.WaitFor(t, 60*time.Second, func() error {
		seqs = testkit.StreamSeqs(t, js, buffer.StreamTelemetry)
		if len(seqs) >= n {
			return errors.New("still waiting for nats-server to read the damaged block (its cache expires)")
		}
		return nil
	})
	lost := missingSeqs(n, seqs)
	a.buf.watcher.Check(context.Background())
	ls := a.State().Losses()
	if len(ls) != 1 || ls[0].From != lost[0] || ls[0].To != lost[len(lost)-1] || ls[0].Count != uint64(len(lost)) || lost[len(lost)-1] != n {
		t.Fatalf("lost %d..%d (%d), recorded %+v", lost[0], lost[len(lost)-1], len(lost), ls)
	}
	if s := a.Status(context.Background()); s.State != wire.Down {
		t.Fatalf("status %s after a loss", s.State)
	}
}
