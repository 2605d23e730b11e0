package agent

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/edge-agent/edge-agent/buffer"
	"github.com/edge-agent/edge-agent/internal/powercut"
	"github.com/edge-agent/edge-agent/internal/testkit"
)

// BenchmarkDiskWritesAgent is buffer's BenchmarkDiskWrites for the whole
// agent: a sim sensor at 10 readings/s stored in the local buffer and
// forwarded to a hub, so the device bytes per reading also carry what the
// agent writes for itself (state.db commits, the cursor backup in
// EDGE_AGENT_STATE). One op is 10 s. Needs root for the loop disk.
func BenchmarkDiskWritesAgent(b *testing.B) {
	if err := powercut.Available(); err != nil {
		b.Skip(err)
	}
	for _, sync := range []string{"always", "1s"} {
		b.Run(fmt.Sprintf("sync=%s/rate=10/s", sync), func(b *testing.B) {
			dir := b.TempDir()
			disk, err := powercut.Create(filepath.Join(dir, "disk.img"), filepath.Join(dir, "mnt"), 256<<20)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = disk.Close() })
			hub, _ := startHub(b, nil, edgeStream)
			body := fmt.Sprintf("buffer: {sync: %s}\nuplink:\n  hub_urls: [%s]\nsensors:\n  - {name: s, driver: sim, interval: 100ms}\n", sync, leafURL(b, hub, "nats"))
			a := runAgent(b, configIn(b, filepath.Join(disk.Dir, "state"), body))
			last := func() uint64 {
				s, err := jsConnect(b, a.ClientURL()).Stream(context.Background(), buffer.StreamTelemetry)
				if err != nil {
					b.Fatal(err)
				}
				return s.CachedInfo().State.LastSeq
			}
			// Forwarding, and past the start's one-off writes.
			testkit.WaitFor(b, 30*time.Second, func() error {
				if c := a.State().Cursor(buffer.StreamTelemetry); c < 20 {
					return errors.New("still waiting for the hub to acknowledge readings")
				}
				return nil
			})
			syscall.Sync()
			before, err := disk.WrittenBytes()
			if err != nil {
				b.Fatal(err)
			}
			first := last()
			b.ResetTimer()
			for range b.N {
				time.Sleep(10 * time.Second)
			}
			b.StopTimer()
			n := last() - first
			syscall.Sync()
			after, err := disk.WrittenBytes()
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(after-before)/float64(n), "disk_B/reading")
			b.ReportMetric(float64(n)/(float64(b.N)*10), "readings/s")
		})
	}
}
