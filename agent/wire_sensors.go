package agent

import (
	"context"
	"encoding/json"
	"reflect"
	"sync"

	"github.com/edge-agent/edge-agent/sensors"
)

// jsPublisher publishes with a JetStream ack: a reading counts only once
// the local stream has it.
type jsPublisher struct{ a *Agent }

func (p jsPublisher) Publish(ctx context.Context, subject string, data []byte) error {
	_, err := p.a.js.Publish(ctx, subject, data)
	return err
}

// sensorsPart runs the sampler and restarts it when SIGHUP changes sensors.
type sensorsPart struct {
	mu      sync.Mutex
	sampler *sensors.Sampler
	running []sensors.Config // what sampler runs: a reload is async and may be refused
	restart chan []sensors.Config
}

func (a *Agent) setupSensors(ctx context.Context, cfg *Config) error {
	sp := &sensorsPart{restart: make(chan []sensors.Config, 1)}
	s, err := a.newSampler(cfg.Sensors)
	if err != nil {
		return err
	}
	sp.sampler, sp.running = s, cfg.Sensors
	a.sensors = sp
	a.addPart("sensor-writes", a.serveWrites)
	a.addPart("sensors", func(ctx context.Context) error {
		for {
			sp.mu.Lock()
			cur := sp.sampler
			sp.mu.Unlock()
			sctx, cancel := context.WithCancel(ctx)
			done := make(chan struct{})
			go func() { _ = cur.Run(sctx); close(done) }()
			select {
			case <-ctx.Done():
				cancel()
				<-done
				return nil
			case next := <-sp.restart:
				ns, err := a.newSampler(next)
				if err != nil {
					a.log.Error("reload: sensors rejected; keeping the running ones", "err", err)
					continue
				}
				cancel()
				<-done
				sp.mu.Lock()
				sp.sampler, sp.running = ns, next
				sp.mu.Unlock()
				a.log.Info("reload: sensors restarted", "count", len(next))
			}
		}
	})
	return nil
}

// newSampler builds a sampler publishing into the local streams. Drivers
// get the state dir so the system driver reports the store's free space.
func (a *Agent) newSampler(cfgs []sensors.Config) (*sensors.Sampler, error) {
	return sensors.NewSampler(cfgs, sensors.Options{
		Publisher: jsPublisher{a},
		Log:       a.log.With("component", "sensors"),
		Env:       sensors.Env{StateDir: a.Config().StateDir},
		Observer:  a.recordSensor,
		Wall:      a.buf.clock.stamp,
	})
}

// recordSensor keeps each sensor's last reading and error in state.db
// (batched there), so status can show them while the daemon is down.
func (a *Agent) recordSensor(h sensors.Health) {
	st := a.State()
	if st == nil {
		return
	}
	vals, err := json.Marshal(h.LastValues)
	if err != nil || h.LastValues == nil {
		vals = nil
	}
	if err := sensors.SaveRecord(st, h.Name, sensors.Record{Values: vals, LastRead: h.LastRead, LastError: h.LastError, Errors: h.Errors}); err != nil {
		a.log.Warn("cannot keep the sensor's record in state.db", "sensor", h.Name, "err", err)
	}
}

func (a *Agent) reloadSensors(prev, next *Config) {
	if a.sensors == nil {
		return
	}
	if reflect.DeepEqual(sensorKeys(prev), sensorKeys(next)) {
		// Unchanged: the running sampler runs next's sensors too.
		a.sensors.mu.Lock()
		a.sensors.running = next.Sensors
		a.sensors.mu.Unlock()
		return
	}
	select {
	case a.sensors.restart <- next.Sensors:
	default:
	}
}

func sensorKeys(c *Config) []sensors.Config {
	out := make([]sensors.Config, len(c.Sensors))
	copy(out, c.Sensors)
	return out
}

// sensorsRunning reports whether the sampler runs cfgs, the very slice a
// Reload handed over (compared by identity: that slice is what the sampler
// was restarted with, whatever its contents compare equal to).
func (a *Agent) sensorsRunning(cfgs []sensors.Config) bool {
	if len(cfgs) == 0 || a.sensors == nil {
		return true
	}
	a.sensors.mu.Lock()
	defer a.sensors.mu.Unlock()
	r := a.sensors.running
	return len(r) == len(cfgs) && &r[0] == &cfgs[0]
}

// SensorHealth reports every sensor's health for status.
func (a *Agent) SensorHealth() []sensors.Health {
	if a.sensors == nil {
		return nil
	}
	a.sensors.mu.Lock()
	defer a.sensors.mu.Unlock()
	return a.sensors.sampler.Health()
}
