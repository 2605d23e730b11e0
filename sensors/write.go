package sensors

import (
	"context"
	"fmt"
)

// Write sets a metric of sensor name on its device, for local control: only a
// driver with a write path and a metric the config declares writable
// accept. Every attempt is logged and counted in the sensor's health.
func (s *Sampler) Write(ctx context.Context, name, metric string, value float64) error {
	var se *sensor
	for _, c := range s.sensors {
		if c.cfg.Name == name {
			se = c
		}
	}
	if se == nil {
		err := fmt.Errorf("no sensor %q in this agent's config", name)
		s.log.Warn("write refused", "sensor", name, "metric", metric, "value", value, "err", err)
		return err
	}
	var err error
	if se.reg.Write == nil {
		err = fmt.Errorf("sensor %s (driver %s) takes no writes", name, se.cfg.Driver)
	} else {
		err = se.reg.Write(ctx, se.cfg, se.cfg.Options, metric, value)
	}
	se.mu.Lock()
	se.health.Writes++
	if err != nil {
		se.health.WriteErrors++
	}
	se.mu.Unlock()
	if err != nil {
		s.log.Warn("write refused or failed", "sensor", name, "metric", metric, "value", value, "err", err)
		return err
	}
	s.log.Info("write", "sensor", name, "metric", metric, "value", value)
	return nil
}
