package sensors

import (
	"bytes"
	"encoding/json"
	"math"
	"reflect"
	"testing"
	"time"
	"unicode/utf8"
)

// FuzzReadingJSON: the Reading payload is the contract the hub decodes.
// Whatever a local app publishes on telemetry.> must never panic a decoder,
// and once decoded a Reading must encode to a fixed point (decode, encode,
// decode, encode gives the same bytes), so a relay never alters a payload.
func FuzzReadingJSON(f *testing.F) {
	f.Add([]byte(`{"sensor":"coldroom","driver":"sim","seq":1,"ts":"2026-01-02T03:04:05.123456789Z","boot_id":"b","mono_ns":5,"clock_synced":true,"values":{"temperature":{"v":3.5,"unit":"C"}},"quality":"ok"}`))
	f.Add([]byte(`{"sensor":"door","seq":18446744073709551615,"ts":"1970-01-01T00:00:00Z","values":{}}`))
	f.Add([]byte(`{"values":{"a":{"v":-1e308},"b":{"v":5e-324}}}`))
	f.Add([]byte(`{"ts":"0001-01-01T00:00:00+14:00"}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var r Reading
		if json.Unmarshal(data, &r) != nil {
			return
		}
		first, err := json.Marshal(r)
		if err != nil {
			// Only a time outside years 0-9999 cannot be encoded; the sampler
			// never produces one because it stamps with time.Now.
			if r.Time.Year() >= 0 && r.Time.Year() <= 9999 {
				t.Fatalf("decoded reading cannot be encoded: %v\ninput: %s", err, data)
			}
			return
		}
		var back Reading
		if err := json.Unmarshal(first, &back); err != nil {
			t.Fatalf("encoded reading does not decode: %v\n%s", err, first)
		}
		second, err := json.Marshal(back)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(first, second) {
			t.Fatalf("encoding is not a fixed point:\nfirst:  %s\nsecond: %s", first, second)
		}
	})
}

// FuzzReadingRoundTrip builds readings the way the sampler does and checks
// every field survives the trip to the hub. Non-finite values are refused by
// encoding/json: that is asserted, so a driver returning NaN shows up as a
// sample error (counted in health), never as a silently altered payload.
func FuzzReadingRoundTrip(f *testing.F) {
	f.Add("coldroom", "sim", uint64(1), int64(1767322800123456789), int64(42), true, "temperature", 3.5, "C")
	f.Add("x", "bme280", uint64(math.MaxUint64), int64(0), int64(-1), false, "", math.Copysign(0, -1), "")
	f.Add("ü", "gpio", uint64(0), int64(-62135596800000000), int64(math.MaxInt64), true, "\x00", math.Inf(1), "\u2028")
	f.Fuzz(func(t *testing.T, sensor, driver string, seq uint64, unixNano, mono int64, synced bool, metric string, v float64, unit string) {
		in := Reading{
			Sensor: sensor, Driver: driver, Seq: seq, Time: time.Unix(0, unixNano).UTC(),
			BootID: "boot", Mono: mono, ClockSynced: synced, Quality: QualityOK,
			Values: map[string]Value{metric: {V: v, Unit: unit}},
		}
		data, err := json.Marshal(in)
		if math.IsNaN(v) || math.IsInf(v, 0) {
			if err == nil {
				t.Fatalf("non-finite value %v encoded as %s", v, data)
			}
			return
		}
		if err != nil {
			t.Fatalf("encode: %v", err)
		}
		var out Reading
		if err := json.Unmarshal(data, &out); err != nil {
			t.Fatalf("decode %s: %v", data, err)
		}
		if !out.Time.Equal(in.Time) {
			t.Fatalf("ts changed: %v -> %v", in.Time, out.Time)
		}
		out.Time = in.Time
		if !utf8Valid(sensor, driver, metric, unit) {
			// encoding/json replaces invalid UTF-8 byte by byte with U+FFFD:
			// what reaches the hub is then valid text, never raw bytes.
			var unitOut string
			for _, v := range out.Values {
				unitOut = v.Unit
			}
			if !utf8Valid(out.Sensor, out.Driver, unitOut) {
				t.Fatalf("invalid UTF-8 survived the round trip: %#v", out)
			}
			return
		}
		if !reflect.DeepEqual(in, out) {
			t.Fatalf("round trip changed the reading:\nin:  %#v\nout: %#v", in, out)
		}
	})
}

func utf8Valid(ss ...string) bool {
	for _, s := range ss {
		if !utf8.ValidString(s) {
			return false
		}
	}
	return true
}
