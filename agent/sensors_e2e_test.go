package agent

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/edge-agent/edge-agent/internal/testkit"
	"github.com/edge-agent/edge-agent/sensors"
)

// Sim readings land in the local TELEMETRY stream with the documented
// schema, threshold alerts land in ALERTS, a failing sensor degrades only
// itself, and the last reading reaches state.db.
func TestSensorsEndToEnd(t *testing.T) {
	ta := startAgent(t, `sensors:
  - {name: room, driver: sim, interval: 50ms, seed: 7, base: {temperature: 4.0, humidity: 60}, unit: C}
  - {name: hot, driver: sim, interval: 50ms, base: {temperature: 30}, unit: C, alert_above: 25}
  - {name: broken, driver: ds18b20, interval: 50ms, root: /nonexistent/w1}
`)
	js := jsConnect(t, ta.ClientURL())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cons, err := js.OrderedConsumer(ctx, "TELEMETRY", jetstream.OrderedConsumerConfig{FilterSubjects: []string{"telemetry.room"}})
	if err != nil {
		t.Fatal(err)
	}
	var rs []sensors.Reading
	for len(rs) < 5 {
		msg, err := cons.Next(jetstream.FetchMaxWait(10 * time.Second))
		if err != nil {
			t.Fatalf("reading %d: %v\n%s", len(rs), err, ta.logs)
		}
		var raw map[string]json.RawMessage
		if err := json.Unmarshal(msg.Data(), &raw); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"sensor", "driver", "seq", "ts", "boot_id", "mono_ns", "clock_synced", "values", "quality"} {
			if _, ok := raw[k]; !ok {
				t.Fatalf("reading lacks %q: %s", k, msg.Data())
			}
		}
		var r sensors.Reading
		if err := json.Unmarshal(msg.Data(), &r); err != nil {
			t.Fatal(err)
		}
		rs = append(rs, r)
	}
	for i, r := range rs {
		if r.Sensor != "room" || r.Driver != "sim" || r.Seq != uint64(i+1) || r.Quality != "ok" || r.Mono <= 0 {
			t.Fatalf("reading %d: %+v", i, r)
		}
		if i > 0 && r.Mono <= rs[i-1].Mono {
			t.Fatalf("mono_ns not increasing: %d then %d", rs[i-1].Mono, r.Mono)
		}
		if v := r.Values["temperature"]; v.Unit != "C" || v.V < 1 || v.V > 7 {
			t.Fatalf("temperature %+v", v)
		}
		if _, ok := r.Values["humidity"]; !ok {
			t.Fatalf("humidity missing: %+v", r.Values)
		}
	}

	// The alert took the ALERTS stream.
	alerts, err := js.Stream(ctx, "ALERTS")
	if err != nil {
		t.Fatal(err)
	}
	msg, err := alerts.GetLastMsgForSubject(ctx, "alerts.hot")
	if err != nil {
		t.Fatalf("no alert: %v", err)
	}
	var a sensors.Alert
	if err := json.Unmarshal(msg.Data, &a); err != nil || a.State != "raised" || a.Kind != "above" || a.Threshold != 25 {
		t.Fatalf("alert %s: %v", msg.Data, err)
	}

	// The broken sensor is degraded in status, with what to do, and only it.
	testkit.WaitFor(t, 10*time.Second, func() error {
		for _, h := range ta.SensorHealth() {
			if h.Name == "broken" {
				if !(h.Errors > 0 && strings.Contains(h.LastError, "dtoverlay=w1-gpio")) {
					return errors.New("still waiting for broken sensor in health")
				}
				return nil
			}
		}
		return errors.New("still waiting for broken sensor in health")
	})
	for _, h := range ta.SensorHealth() {
		if h.Name != "broken" && (!h.OK || h.Errors > 0) {
			t.Fatalf("%s degraded by another sensor: %+v", h.Name, h)
		}
	}

	// state.db has the last reading and the last error.
	testkit.WaitFor(t, 10*time.Second, func() error {
		recs, err := sensors.LoadRecords(ta.State())
		if err != nil {
			return err
		}
		if !(len(recs["room"].Values) > 0 && !recs["room"].LastRead.IsZero() && strings.Contains(recs["broken"].LastError, "DS18B20")) {
			return errors.New("still waiting for sensor records in state.db")
		}
		return nil
	})
}
