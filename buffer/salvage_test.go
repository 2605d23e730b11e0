package buffer

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/edge-agent/edge-agent/internal/testkit"
	"github.com/nats-io/nats.go/jetstream"
)

// 2 KiB of damage at random offsets of random blocks (several blocks per
// stream): after the salvage pass only the records in the damaged bytes
// are gone, and the losses it reports are exactly the missing sequences.
func TestSalvageRandomDamage(t *testing.T) {
	const n, size = 24000, 200
	rng := rand.New(rand.NewPCG(16, 5))
	for trial := range 8 {
		dir, c, _, blocks := stoppedStore(t, n, size)
		if len(blocks) < 2 {
			t.Fatalf("%d block files: the test wants several", len(blocks))
		}
		b := blocks[rng.IntN(len(blocks))]
		buf, err := os.ReadFile(b.path)
		mustOK(t, err)
		off := rng.IntN(len(buf) - 2048)
		switch trial {
		case 0: // the very end of a block that is not the last
			b = blocks[0]
			buf, _ = os.ReadFile(b.path)
			off = len(buf) - 2048
		case 1: // the very start of the last block
			b = blocks[len(blocks)-1]
			buf, _ = os.ReadFile(b.path)
			off = 0
		}
		for i := off; i < off+2048; i++ {
			buf[i] = byte(rng.Uint32())
		}
		mustOK(t, os.WriteFile(b.path, buf, 0o640))

		losses, err := SalvageStore(dir, slog.New(slog.DiscardHandler))
		mustOK(t, err)
		_, js := jsServer(t, dir, c)
		have := testkit.StreamSeqs(t, js, StreamTelemetry)
		var missing []uint64
		for q := uint64(1); q <= n; q++ {
			if _, ok := slices.BinarySearch(have, q); !ok {
				missing = append(missing, q)
			}
		}
		var reported []uint64
		for _, l := range losses {
			if l.Stream != StreamTelemetry || l.Count != l.To-l.From+1 {
				t.Fatalf("trial %d: loss %+v", trial, l)
			}
			for q := l.From; q <= l.To; q++ {
				reported = append(reported, q)
			}
		}
		t.Logf("trial %d: block %d of %d at %d: %d missing, reported %v", trial, b.index, len(blocks), off, len(missing), losses)
		if len(missing) == 0 || len(missing) > 2048/size+2 {
			t.Fatalf("trial %d: %d readings missing after 2 KiB of damage in %d-byte records", trial, len(missing), size)
		}
		if !slices.Equal(missing, reported) {
			t.Fatalf("trial %d: missing %v, reported %v", trial, missing, reported)
		}
	}
}

// Blocks whose every message the hub acknowledged (at or below the cursor
// in state.db) are not read at start: the pass costs reading the
// unforwarded part only.
func TestSalvageSkipsForwardedBlocks(t *testing.T) {
	dir, _, _, blocks := stoppedStore(t, 24000, 200)
	second, ok := firstRecordSeq(blocks[1].path)
	if len(blocks) < 2 || !ok {
		t.Fatalf("blocks %v", blocks)
	}
	st := openTestState(t, filepath.Join(dir, "state.db"))
	st.SetCursor(StreamTelemetry, second-1)
	mustOK(t, st.Close())
	buf, err := os.ReadFile(blocks[0].path)
	mustOK(t, err)
	for i := 1000; i < 3048; i++ {
		buf[i] = 0xA5
	}
	mustOK(t, os.WriteFile(blocks[0].path, buf, 0o640))
	losses, err := SalvageStore(dir, slog.New(slog.DiscardHandler))
	if err != nil || len(losses) != 0 {
		t.Fatalf("losses %v, %v: a forwarded block was salvaged", losses, err)
	}
	if _, err := os.Stat(filepath.Join(dir, damagedDir)); !os.IsNotExist(err) {
		t.Fatalf("a forwarded block was rewritten: %v", err)
	}
}

// A stream an operator switched to S2 compression has compressed blocks:
// the salvage pass must leave them alone, not take them for damage.
func TestSalvageLeavesCompressedBlocks(t *testing.T) {
	dir := t.TempDir()
	c := testConfig("1s", 16<<20)
	srv, js := jsServer(t, dir, c)
	ctx := context.Background()
	cfg := StreamConfigs(c)[1]
	cfg.Compression = jetstream.S2Compression
	_, err := js.CreateStream(ctx, cfg)
	mustOK(t, err)
	publishN(t, js, "telemetry.t", 24000, 200)
	srv.Shutdown()
	srv.WaitForShutdown()
	blocks, err := blockFiles(filepath.Join(dir, "jetstream", "$G", "streams", StreamTelemetry, "msgs"))
	mustOK(t, err)
	buf, err := os.ReadFile(blocks[0].path)
	mustOK(t, err)
	if len(blocks) < 2 || !compressed(buf) {
		t.Fatalf("want a compressed first block: %d blocks", len(blocks))
	}
	losses, err := SalvageStore(dir, slog.New(slog.DiscardHandler))
	if err != nil || len(losses) != 0 {
		t.Fatalf("losses %v, %v", losses, err)
	}
	_, js = jsServer(t, dir, c)
	if got := testkit.StreamSeqs(t, js, StreamTelemetry); len(got) != 24000 {
		t.Fatalf("%d messages after the salvage pass, want 24000", len(got))
	}
}

// Removing index.db makes nats-server rebuild the stream from its blocks:
// messages purged (the ager's purge by sequence) or deleted before must
// not come back.
func TestSalvageKeepsDeletesDeleted(t *testing.T) {
	dir := t.TempDir()
	c := testConfig("1s", 16<<20)
	srv, js := jsServer(t, dir, c)
	ctx := context.Background()
	mustOK(t, EnsureStreams(ctx, js, c))
	publishN(t, js, "telemetry.t", 5000, 100)
	s, err := js.Stream(ctx, StreamTelemetry)
	mustOK(t, err)
	mustOK(t, s.Purge(ctx, jetstream.WithPurgeSequence(2001)), "purge")
	mustOK(t, s.DeleteMsg(ctx, 3000), "delete")
	srv.Shutdown()
	srv.WaitForShutdown()
	blocks, err := blockFiles(filepath.Join(dir, "jetstream", "$G", "streams", StreamTelemetry, "msgs"))
	mustOK(t, err)
	b := blocks[len(blocks)-1]
	buf, err := os.ReadFile(b.path)
	mustOK(t, err)
	off := len(buf) * 3 / 4
	for i := off; i < off+1024; i++ {
		buf[i] = 0x5a
	}
	mustOK(t, os.WriteFile(b.path, buf, 0o640))
	losses, err := SalvageStore(dir, slog.New(slog.DiscardHandler))
	if err != nil || len(losses) != 1 || losses[0].From <= 3000 {
		t.Fatalf("losses %v, %v", losses, err)
	}
	_, js = jsServer(t, dir, c)
	got := testkit.StreamSeqs(t, js, StreamTelemetry)
	if want := 3000 - 1 - int(losses[0].Count); len(got) != want || got[0] != 2001 || slices.Contains(got, 3000) {
		t.Fatalf("%d messages from %d after the pass, want %d from 2001 without 3000", len(got), got[0], want)
	}
}

// An empty block file (a crash right after nats-server created it) is an
// empty block, not a reason to fail the start; neither is a block that
// nats-server emptied between the pass stating and reading it.
func TestSalvageEmptyBlock(t *testing.T) {
	dir, _, msgs, blocks := stoppedStore(t, 100, 200)
	empty := filepath.Join(msgs, fmt.Sprintf("%d.blk", blocks[len(blocks)-1].index+1))
	mustOK(t, os.WriteFile(empty, nil, 0o640))
	losses, err := SalvageStore(dir, slog.New(slog.DiscardHandler))
	if err != nil || len(losses) != 0 {
		t.Fatalf("salvage with an empty block file: losses %v, %v", losses, err)
	}

	b, err := readSized(strings.NewReader(""), 4096, nil)
	if err != nil || len(b) != 0 {
		t.Fatalf("a block emptied after it was stated: %d bytes, %v; want an empty block", len(b), err)
	}
}

// stoppedStore is a stopped store whose TELEMETRY holds n readings of
// size bytes, with its block files (msgs is their directory).
func stoppedStore(t *testing.T, n, size int) (dir string, c Config, msgs string, blocks []blockFile) {
	t.Helper()
	dir, c = t.TempDir(), testConfig("1s", 16<<20)
	srv, js := jsServer(t, dir, c)
	mustOK(t, EnsureStreams(context.Background(), js, c))
	publishN(t, js, "telemetry.t", n, size)
	srv.Shutdown()
	srv.WaitForShutdown()
	msgs = filepath.Join(dir, "jetstream", "$G", "streams", StreamTelemetry, "msgs")
	blocks, err := blockFiles(msgs)
	mustOK(t, err)
	return dir, c, msgs, blocks
}
