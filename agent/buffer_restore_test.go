package agent

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/edge-agent/edge-agent/buffer"
)

// copyTree copies dir as a backup tool or an SD-card image does; with the
// agent running it is a live copy.
func copyTree(t testing.TB, src, dst string) {
	t.Helper()
	if err := os.CopyFS(dst, os.DirFS(src)); err != nil {
		t.Fatalf("copy %s to %s: %v", src, dst, err)
	}
}

// restoreTree replaces dir's contents with the copy in from.
func restoreTree(t *testing.T, from, dir string) {
	t.Helper()
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	copyTree(t, from, dir)
}

// A restored copy of state_dir (a backup, an old SD card put back) cannot
// know which message ids its later runs sent: new readings after the
// restore must still get ids the hub has never seen, and the readings the
// copy holds keep theirs. Both a copy of a cleanly stopped store and a
// live copy of a running one (crash-consistent, taken before that run sent
// anything). Before, new readings reused the ids of the readings sent
// after the copy, the hub dropped them as duplicates and status counted
// them as forwarded.
func TestBufferRestoredCopyExactlyOnce(t *testing.T) {
	for _, live := range []bool{false, true} {
		name := "clean-stop copy"
		if live {
			name = "live copy"
		}
		t.Run(name, func(t *testing.T) {
			s, backup := newIDsSite(t), filepath.Join(t.TempDir(), "backup")
			a := s.forwardAll(t, 0, 100)
			if err := a.stop(); err != nil {
				t.Fatal(err)
			}
			if !live {
				copyTree(t, s.dir, backup)
			}
			b := s.start(t)
			if live {
				copyTree(t, s.dir, backup)
			}
			publishAll(t, b, 100, 300)
			if err := b.stop(); err != nil {
				t.Fatal(err)
			}

			restoreTree(t, backup, s.dir)
			c := s.forwardAll(t, 300, 500)
			checkHubOnce(t, s.hjs, 500)
			f := c.ForwarderStatus()
			if n := f.Forwarded[buffer.StreamTelemetry]; n != 200 || f.DroppedDuplicate != 0 {
				t.Fatalf("after the restore: forwarded %d (want the 200 new ones), %d dropped as duplicates", n, f.DroppedDuplicate)
			}
		})
	}
}
