package sensors

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"
)

// Publisher is how readings leave the sampler: a JetStream publish that
// returns only once the local stream has acknowledged (and, with
// buffer.sync=always, fsynced) the message.
type Publisher interface {
	Publish(ctx context.Context, subject string, data []byte) error
}

// Reading is the payload of telemetry.<sensor>: the subject contract local
// apps and the hub build against. Keep fields stable; add, never rename.
type Reading struct {
	Sensor string           `json:"sensor"`
	Driver string           `json:"driver"`
	Seq    uint64           `json:"seq"` // per sensor, monotonic within a boot
	Time   time.Time        `json:"ts"`
	Values map[string]Value `json:"values"`
}

// Health is what status shows for one sensor.
type Health struct {
	Name       string           `json:"name"`
	Driver     string           `json:"driver"`
	OK         bool             `json:"ok"`
	LastValues map[string]Value `json:"last_values,omitempty"`
	LastRead   time.Time        `json:"last_read,omitzero"`
	LastError  string           `json:"last_error,omitempty"`
	Errors     uint64           `json:"errors"`
	Published  uint64           `json:"published"`
}

// Sampler runs one loop per sensor.
type Sampler struct {
	log     *slog.Logger
	pub     Publisher
	sensors []*sensor
}

type sensor struct {
	cfg Config
	drv Driver

	mu     sync.Mutex
	health Health
	seq    uint64
}

// NewSampler builds every driver. A driver that cannot be built is an error
// here: the config named hardware that the driver rejects.
func NewSampler(cfgs []Config, pub Publisher, log *slog.Logger) (*Sampler, error) {
	if err := ValidateAll(cfgs); err != nil {
		return nil, err
	}
	s := &Sampler{log: log, pub: pub}
	for i, c := range cfgs {
		reg, _ := Lookup(c.Driver)
		d, err := reg.New(c, c.Options)
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("sensors[%d] %s (%s): %w", i, c.Name, c.Driver, err)
		}
		s.sensors = append(s.sensors, &sensor{cfg: c, drv: d, health: Health{Name: c.Name, Driver: c.Driver}})
	}
	return s, nil
}

// Run samples until ctx ends.
func (s *Sampler) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, se := range s.sensors {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.loop(ctx, se)
		}()
	}
	wg.Wait()
	return nil
}

func (s *Sampler) loop(ctx context.Context, se *sensor) {
	t := time.NewTicker(se.cfg.Interval)
	defer t.Stop()
	for {
		s.sample(ctx, se)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *Sampler) sample(ctx context.Context, se *sensor) {
	rctx, cancel := context.WithTimeout(ctx, se.cfg.Timeout)
	vals, err := se.drv.Read(rctx)
	cancel()
	now := time.Now()
	se.mu.Lock()
	defer se.mu.Unlock()
	if err != nil {
		se.health.OK, se.health.LastError = false, err.Error()
		se.health.Errors++
		return
	}
	se.seq++
	data, err := json.Marshal(Reading{Sensor: se.cfg.Name, Driver: se.cfg.Driver, Seq: se.seq, Time: now.UTC(), Values: vals})
	if err == nil {
		err = s.pub.Publish(ctx, "telemetry."+se.cfg.Name, data)
	}
	if err != nil {
		se.health.OK, se.health.LastError = false, "publish: "+err.Error()
		se.health.Errors++
		return
	}
	se.health.OK, se.health.LastError = true, ""
	se.health.LastValues, se.health.LastRead = vals, now
	se.health.Published++
}

// Health returns each sensor's state, in config order.
func (s *Sampler) Health() []Health {
	out := make([]Health, 0, len(s.sensors))
	for _, se := range s.sensors {
		se.mu.Lock()
		out = append(out, se.health)
		se.mu.Unlock()
	}
	sort.SliceStable(out, func(i, j int) bool { return !out[i].OK && out[j].OK })
	return out
}

// Close releases every driver.
func (s *Sampler) Close() error {
	for _, se := range s.sensors {
		_ = se.drv.Close()
	}
	return nil
}
