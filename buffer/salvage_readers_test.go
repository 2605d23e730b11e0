package buffer

import (
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// The salvage pass reads a window of blocks side by side and walks their
// sequences in order afterwards: it must find exactly what one block at a
// time finds, with damage in several blocks of one window, a cut running
// from the end of one block into the next, and a block the hub has all of
// that such a cut runs into (read only then, outside the window's reads).
func TestSalvageReadersAgree(t *testing.T) {
	dir, _, msgs, blocks := stoppedStoreOf(t, testConfig("1s", 256<<20), 40000, 2000)
	if len(blocks) < 6 {
		t.Fatalf("%d block files: the test wants more than one window of 4", len(blocks))
	}
	damage := func(dir string, b blockFile, from, to int) {
		path := filepath.Join(dir, "jetstream", "$G", "streams", StreamTelemetry, "msgs", filepath.Base(b.path))
		buf, err := os.ReadFile(path)
		mustOK(t, err)
		if from < 0 {
			from, to = len(buf)+from, len(buf)+to
		}
		for i := from; i < to; i++ {
			buf[i] = 0xA5
		}
		mustOK(t, os.WriteFile(path, buf, 0o640))
	}
	third, ok := firstRecordSeq(blocks[2].path)
	if !ok {
		t.Fatal("no first record in block 2")
	}
	for _, tc := range []struct {
		name   string
		cursor uint64
	}{{"nothing forwarded", 0}, {"a cut into a forwarded block", third - 1}} {
		t.Run(tc.name, func(t *testing.T) {
			var got [2][]Loss
			var stores [2]string
			for k, readers := range []int{1, 4} {
				d := filepath.Join(t.TempDir(), "state")
				mustOK(t, os.CopyFS(d, os.DirFS(dir)))
				// The end of block 0 and the start of block 1 (one cut
				// across them), the middle of block 3 and of block 5 (the
				// next window).
				damage(d, blocks[0], -2048, 0)
				damage(d, blocks[1], 0, 2048)
				damage(d, blocks[3], 10000, 12048)
				damage(d, blocks[5], 10000, 12048)
				st := openTestState(t, filepath.Join(d, "state.db"))
				st.SetCursor(StreamTelemetry, tc.cursor)
				mustOK(t, st.Close())
				was := salvageReaders
				salvageReaders = readers
				losses, err := SalvageStore(d, slog.New(slog.DiscardHandler))
				salvageReaders = was
				mustOK(t, err)
				got[k], stores[k] = losses, d
			}
			if len(got[0]) < 3 || !reflect.DeepEqual(got[0], got[1]) {
				t.Fatalf("one reader found %+v, four found %+v", got[0], got[1])
			}
			for _, b := range blocks {
				rel := filepath.Join("jetstream", "$G", "streams", StreamTelemetry, "msgs", filepath.Base(b.path))
				one, err := os.ReadFile(filepath.Join(stores[0], rel))
				mustOK(t, err)
				four, err := os.ReadFile(filepath.Join(stores[1], rel))
				mustOK(t, err)
				if string(one) != string(four) {
					t.Fatalf("block %s differs after the pass with one reader and with four", rel)
				}
			}
			t.Logf("%d blocks in %s, losses %+v", len(blocks), msgs, got[0])
		})
	}
}
