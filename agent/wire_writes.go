package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
)

// WriteSubject is where a local app (or the hub, through
// edge.<site>.cmd.>) asks the agent to set a writable value:
// cmd.modbus.<sensor>.<metric>.
const WriteSubject = "cmd.modbus.*.*"

// writeTimeout bounds one write request, bus wait included.
const writeTimeout = 10 * time.Second

// WriteReply answers a write request.
type WriteReply struct {
	OK     bool    `json:"ok"`
	Sensor string  `json:"sensor,omitempty"`
	Metric string  `json:"metric,omitempty"`
	Value  float64 `json:"value"`
	Error  string  `json:"error,omitempty"`
}

// serveWrites answers write requests on the agent's own connection until
// ctx ends. The sampler in place at each request does the write, so a
// SIGHUP that changes the sensors changes what can be written.
func (a *Agent) serveWrites(ctx context.Context) error {
	sub, err := a.nc.Subscribe(WriteSubject, func(m *nats.Msg) {
		parts := strings.Split(m.Subject, ".")
		r := WriteReply{Sensor: parts[2], Metric: parts[3]}
		v, err := parseWriteValue(m.Data)
		if err != nil {
			a.log.Warn("write refused", "subject", m.Subject, "err", err)
		} else {
			wctx, cancel := context.WithTimeout(ctx, writeTimeout)
			a.sensors.mu.Lock()
			s := a.sensors.sampler
			a.sensors.mu.Unlock()
			err = s.Write(wctx, r.Sensor, r.Metric, v)
			cancel()
		}
		r.Value, r.OK = v, err == nil
		if err != nil {
			r.Error = err.Error()
		}
		if m.Reply != "" {
			b, _ := json.Marshal(r)
			_ = m.Respond(b)
		}
	})
	if err != nil {
		return fmt.Errorf("subscribe %s: %w", WriteSubject, err)
	}
	<-ctx.Done()
	return sub.Unsubscribe()
}

// parseWriteValue accepts {"value": 21.5}, a bare number, or true/false.
func parseWriteValue(data []byte) (float64, error) {
	var body struct {
		Value *json.RawMessage `json:"value"`
	}
	raw := json.RawMessage(data)
	if json.Unmarshal(data, &body) == nil && body.Value != nil {
		raw = *body.Value
	}
	var f float64
	if json.Unmarshal(raw, &f) == nil {
		return f, nil
	}
	var b bool
	if json.Unmarshal(raw, &b) == nil {
		if b {
			return 1, nil
		}
		return 0, nil
	}
	return 0, fmt.Errorf(`want {"value": 21.5}, a number, or true/false; got %.64q`, data)
}
