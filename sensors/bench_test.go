package sensors

import (
	"context"
	"testing"
	"time"
)

type discardPub struct{}

func (discardPub) Publish(context.Context, string, []byte) error { return nil }

// BenchmarkSampleReading is the sampler's own cost per reading: the guarded
// read (goroutine + timeout), timestamps, JSON encoding, queueing and the
// hand-off to the publisher (which here discards).
func BenchmarkSampleReading(b *testing.B) {
	s, err := NewSampler([]Config{{Name: "room", Driver: "sim", Interval: time.Second,
		Options: &SimOptions{Seed: 1, Base: map[string]float64{"temperature": 4, "humidity": 60}, Unit: "C"}}},
		Options{Publisher: discardPub{}})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	se := s.sensors[0]
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.sample(ctx, se); err != nil {
			b.Fatal(err)
		}
		if err, _ := s.publishHead(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
