package buffer

import (
	"context"
	"fmt"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/edge-agent/edge-agent/internal/powercut"
	"github.com/edge-agent/edge-agent/internal/testkit"
)

// standalone is a plain nats-server with only JetStream and the same sync
// policy, storing in dir, with one stream sc: the peer the agent's buffer is
// compared with.
func standalone(b *testing.B, dir string, c Config, sc jetstream.StreamConfig) jetstream.JetStream {
	b.Helper()
	o := &server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true, JetStream: true, StoreDir: dir,
		SyncAlways: c.SyncAlways(), SyncInterval: c.SyncInterval()}
	// Over TCP, as local apps connect, not in-process.
	_, js := testkit.Connect(b, testkit.RunServer(b, o).ClientURL())
	if _, err := js.CreateStream(context.Background(), sc); err != nil {
		b.Fatal(err)
	}
	return js
}

func agentShaped(b *testing.B, dir string, c Config) jetstream.JetStream {
	b.Helper()
	s, _ := jsServer(b, dir, c)
	_, js := testkit.Connect(b, s.ClientURL())
	if err := EnsureStreams(context.Background(), js, c); err != nil {
		b.Fatal(err)
	}
	return js
}

// rate publishes n acked messages one at a time (as the sampler does: each
// reading waits for its ack) and returns messages per second.
func rate(b *testing.B, js jetstream.JetStream, n, size int) float64 {
	b.Helper()
	start := time.Now()
	publishN(b, js, "telemetry.bench", n, size)
	return float64(n) / time.Since(start).Seconds()
}

// BenchmarkAckedPublish: acked publishes/s into TELEMETRY, per sync mode
// and payload, next to a standalone nats-server configured the same way in
// the same run (ratio_vs_nats_server; the goal is >= 0.95).
func BenchmarkAckedPublish(b *testing.B) {
	for _, sync := range []string{"always", "1s"} {
		for _, size := range []int{128, 1024} {
			b.Run(fmt.Sprintf("sync=%s/size=%d", sync, size), func(b *testing.B) {
				c := testConfig(sync, 1<<30)
				// A stream left at nats defaults.
				peer := standalone(b, b.TempDir(), c, jetstream.StreamConfig{Name: "T", Subjects: []string{"telemetry.>"}, Storage: jetstream.FileStorage})
				js := agentShaped(b, b.TempDir(), c)
				publishN(b, peer, "telemetry.warm", 100, size)
				publishN(b, js, "telemetry.warm", 100, size)
				// Interleave halves so machine noise hits both sides alike.
				half := max(b.N/2, 1)
				b.ResetTimer()
				a1 := rate(b, js, half, size)
				b.StopTimer()
				p1 := rate(b, peer, half, size)
				b.StartTimer()
				a2 := rate(b, js, max(b.N-half, 1), size)
				b.StopTimer()
				p2 := rate(b, peer, max(b.N-half, 1), size)
				agent, nats := (a1+a2)/2, (p1+p2)/2
				b.ReportMetric(agent, "msgs/s")
				b.ReportMetric(nats, "nats_msgs/s")
				b.ReportMetric(agent/nats, "ratio_vs_nats_server")
			})
		}
	}
}

// BenchmarkDiskWrites measures what reaches the device (loop device
// counters: data, metadata and journal) per payload byte, and projects the
// life of a 16 GB SD card rated for 2,000 write cycles (32 TB written, ideal
// wear levelling, before the card's own write amplification) at 10
// readings/s around the clock. One op is 10 s of readings at 10/s, or 2,000
// readings at full speed. The same readings then go to a stock nats-server
// of the embedded version on a disk of its own (no leaf, no domain, no agent
// code; the agent's TELEMETRY stream config and sync policy): the _nats_server
// figures are the bound for this sync policy, what storing and syncing each
// reading costs on this filesystem whoever asks for it. Needs root for the
// loop disks.
func BenchmarkDiskWrites(b *testing.B) {
	if err := powercut.Available(); err != nil {
		b.Skip(err)
	}
	const size = 128
	// mke2fs gives an image under 512 MiB 1 KiB blocks (its "small" type);
	// an SD card's root filesystem has 4 KiB ones, and every fsync writes
	// whole blocks.
	type diskCase struct {
		sync, pace, name string
		disk             int64
	}
	var cases []diskCase
	for _, sync := range []string{"always", "1s"} {
		for _, pace := range []string{"10/s", "full"} {
			cases = append(cases, diskCase{sync, pace, fmt.Sprintf("sync=%s/rate=%s", sync, pace), 256 << 20})
		}
	}
	for _, sync := range []string{"always", "1s"} {
		cases = append(cases, diskCase{sync, "10/s", fmt.Sprintf("sync=%s/rate=10/s/block=4KiB", sync), 512 << 20})
	}
	for _, dc := range cases {
		b.Run(dc.name, func(b *testing.B) {
			c := testConfig(dc.sync, 128<<20)
			agent := newDisk(b, dc.disk)
			js := agentShaped(b, agent.Dir, c)
			peer := newDisk(b, dc.disk)
			var sc jetstream.StreamConfig
			for _, sc = range StreamConfigs(c) {
				if sc.Name == StreamTelemetry {
					break
				}
			}
			pjs := standalone(b, peer.Dir, c, sc)
			b.ResetTimer()
			written, msgs := diskWritten(b, agent, js, dc.pace, size)
			b.StopTimer()
			pwritten, _ := diskWritten(b, peer, pjs, dc.pace, size)
			perPayload := float64(written) / float64(msgs*size)
			b.ReportMetric(perPayload, "disk_B/payload_B")
			b.ReportMetric(float64(written)/float64(msgs), "disk_B/reading")
			perDay := perPayload * size * 10 * 86400
			b.ReportMetric(16e9*2000/perDay/365, "sd16GB_years@10/s")
			b.ReportMetric(float64(pwritten)/float64(msgs*size), "disk_B/payload_B_nats_server")
			b.ReportMetric(float64(pwritten)/float64(msgs), "disk_B/reading_nats_server")
			b.ReportMetric(float64(written)/float64(pwritten), "x_vs_nats_server")
		})
	}
}

// newDisk is a fresh ext4 loop disk of size bytes, removed with the
// benchmark.
func newDisk(b *testing.B, size int64) *powercut.Disk {
	b.Helper()
	dir := b.TempDir()
	disk, err := powercut.Create(filepath.Join(dir, "disk.img"), filepath.Join(dir, "mnt"), size)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = disk.Close() })
	return disk
}

// diskWritten publishes b.N ops of readings of size bytes at pace ("10/s":
// 100 readings 100 ms apart; "full": 2,000 back to back) into js, whose
// store is on disk, and returns the bytes the device took for them and the
// readings.
func diskWritten(b *testing.B, disk *powercut.Disk, js jetstream.JetStream, pace string, size int) (uint64, int) {
	b.Helper()
	publishN(b, js, "telemetry.warm", 10, size)
	syscall.Sync()
	before, err := disk.WrittenBytes()
	if err != nil {
		b.Fatal(err)
	}
	var msgs int
	for range b.N {
		if pace == "full" {
			publishN(b, js, "telemetry.bench", 2000, size)
			msgs += 2000
			continue
		}
		t := time.NewTicker(100 * time.Millisecond)
		for range 100 {
			<-t.C
			publishN(b, js, "telemetry.bench", 1, size)
		}
		t.Stop()
		msgs += 100
	}
	// What the kernel would write back anyway: count it.
	syscall.Sync()
	after, err := disk.WrittenBytes()
	if err != nil {
		b.Fatal(err)
	}
	return after - before, msgs
}
