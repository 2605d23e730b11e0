package buffer_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/edge-agent/edge-agent/buffer"
	"github.com/edge-agent/edge-agent/sensors"
	"github.com/edge-agent/edge-agent/uplink"
)

// testdata/state-2026-12.db was written by the State of December 2026,
// which had a map, a bucket and a flush loop per record type: cursors
// TELEMETRY=1234 ALERTS=56, 7 evicted, sensor records "temp" and "hum",
// 105 link events (reasons "dial a".."dial z" in turn, one second apart
// from t0), a status record, one loss of seq 10..19, a stream_damaged
// event and TELEMETRY's epochs e1 (from 1) and e2 (from 500). The bucket
// names and encodings are the on-disk format: today's store and the
// features that own the records must read all of it.
func TestStateReadsFileOfDecember2026(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	b, err := os.ReadFile("testdata/state-2026-12.db")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o640); err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	check := func(st *buffer.State, boots uint64, firstLink string) {
		t.Helper()
		if st.StoreID() == "" || st.BootCount() != boots {
			t.Errorf("store id %q boots %d, want %d", st.StoreID(), st.BootCount(), boots)
		}
		if st.Cursor("TELEMETRY") != 1234 || st.Cursor("ALERTS") != 56 || st.Evicted("TELEMETRY") != 7 {
			t.Errorf("cursors %d/%d evicted %d", st.Cursor("TELEMETRY"), st.Cursor("ALERTS"), st.Evicted("TELEMETRY"))
		}
		if eps := st.Epochs("TELEMETRY"); !slices.Equal(eps, []buffer.Epoch{{From: 1, ID: "e1"}, {From: 500, ID: "e2"}}) {
			t.Errorf("epochs %+v", eps)
		}
		if st.MsgIDPrefix("TELEMETRY", 499) != "e1" || st.MsgIDPrefix("TELEMETRY", 500) != "e2" {
			t.Error("message ids do not follow the epochs")
		}
		if l := st.Losses(); len(l) != 1 || l[0].From != 10 || l[0].To != 19 || l[0].Count != 10 || st.LostTotal("TELEMETRY") != 10 {
			t.Errorf("losses %+v total %d", l, st.LostTotal("TELEMETRY"))
		}
		var status map[string]string
		if ok, err := st.GetJSON("status", &status); !ok || err != nil || status["site"] != "s1" {
			t.Errorf("status record %v %v %v", status, ok, err)
		}
		recs, err := sensors.LoadRecords(st)
		if r := recs["temp"]; err != nil || len(recs) != 2 || string(r.Values) != `{"c":21.5}` || !r.LastRead.Equal(t0) || r.LastError != "i2c timeout" || r.Errors != 3 {
			t.Errorf("sensor records %+v, %v", recs, err)
		}
		evs, err := uplink.LinkEvents(st)
		if err != nil || len(evs) != 100 || evs[0].Reason != firstLink || evs[99].Time.Before(t0.Add(104*time.Second)) {
			t.Errorf("link history: %d events, %v, first %+v", len(evs), err, evs[0])
		}
	}

	ro, err := buffer.OpenStateReadOnly(path)
	if err != nil {
		t.Fatal(err)
	}
	check(ro, 1, "dial f")
	if evs := ro.Events(); len(evs) != 1 || evs[0].Kind != buffer.EventStreamDamaged {
		t.Errorf("events of the boot that wrote the file: %+v", evs)
	}
	ro.Close()

	// Written to by today's store, the file keeps all of it; the history
	// stays a ring of its last 100.
	st, err := buffer.OpenState(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	uplink.NewHistory(st).AddLinkEvent(uplink.LinkEvent{Time: t0.Add(time.Hour), Kind: uplink.EventConnect, Reason: "hub-1"})
	if err := sensors.SaveRecord(st, "hum", sensors.Record{Values: json.RawMessage(`{"rh":40}`), LastRead: t0}); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if st, err = buffer.OpenState(path, nil); err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	evs, _ := uplink.LinkEvents(st)
	recs, _ := sensors.LoadRecords(st)
	if len(evs) != 100 || evs[0].Reason != "dial g" || evs[99].Reason != "hub-1" || string(recs["hum"].Values) != `{"rh":40}` {
		t.Fatalf("after writing: %d events, first %+v last %+v, hum %+v", len(evs), evs[0], evs[len(evs)-1], recs["hum"])
	}
	check(st, 3, "dial g")
}
