package uplink

import (
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/edge-agent/edge-agent/buffer"
)

// A hub ack saying "duplicate" for a reading whose id was never sent before
// means another message holds that id at the hub: the reading is not there.
// It is counted and reported, never as forwarded; resends (ids sent by an
// earlier session or process) are still ordinary. Before, the forwarder
// never read the flag and counted the reading as forwarded.
//
// Only per-message acks carry the flag for every reading (inside a fast
// batch the hub skips a duplicate silently), so the hub stream here does
// not allow batches: this is also the fall back from batched publishing to
// a stream without allow_batched.
func TestForwarderDuplicateAckOfNewReading(t *testing.T) {
	e := newFwEnv(t, "s1", fwEnvOpts{})
	e.leafUp()
	e.allowBatches(false)
	f := checkDuplicateAck(t, e)
	if m := f.Status().Mode; m != ModePerMessage {
		t.Fatalf("mode %q against a stream without allow_batched, want %q", m, ModePerMessage)
	}
}

// checkDuplicateAck runs TestForwarderDuplicateAckOfNewReading on e, whose
// leaf is up and whose local streams are empty, and returns its forwarder.
func checkDuplicateAck(t *testing.T, e *fwEnv) *runningFw {
	t.Helper()
	if _, err := buffer.OpenStreams(t.Context(), e.leafJS, e.st, buffer.DefaultConfig(), time.Time{}, nil); err != nil {
		t.Fatal(err)
	}
	e.publish("telemetry.x", 3, []byte("r"))
	// Another message already holds seq 2's id at the hub.
	probe := &Forwarder{site: e.site, st: e.st}
	taken := nats.NewMsg("edge." + e.site + ".telemetry.x")
	taken.Header.Set(nats.MsgIdHdr, probe.MsgID("TELEMETRY", 2))
	taken.Data = []byte("someone else")
	if _, err := e.hubJS.PublishMsg(t.Context(), taken); err != nil {
		t.Fatal(err)
	}
	logs := &fwLog{}
	f := e.start(logs.logger())
	e.waitCursor("TELEMETRY", 3, 20*time.Second, "cursor at 3")
	st := f.Status()
	if st.Forwarded["TELEMETRY"] != 2 || st.DroppedDuplicate != 1 || !strings.Contains(st.LastDuplicate, "TELEMETRY seq 2 on edge."+e.site+".telemetry.x") {
		t.Fatalf("forwarded %d (want 2), dropped as duplicate %d (want 1), last %q", st.Forwarded["TELEMETRY"], st.DroppedDuplicate, st.LastDuplicate)
	}
	if !strings.Contains(logs.String(), "dropped a new reading as a duplicate") || !strings.Contains(logs.String(), "subject=edge."+e.site+".telemetry.x") {
		t.Fatalf("log lacks the dropped reading:\n%s", logs)
	}

	// A replay resends ids the hub has: duplicates, but no alarm.
	if err := f.Replay(t.Context(), "TELEMETRY", 1); err != nil {
		t.Fatal(err)
	}
	e.publish("telemetry.x", 1, []byte("r4"))
	e.waitCursor("TELEMETRY", 4, 20*time.Second, "cursor at 4")
	if st := f.Status(); st.DroppedDuplicate != 1 || st.Forwarded["TELEMETRY"] != 6 {
		t.Fatalf("after a replay: dropped as duplicate %d (want 1), forwarded %d (want 6: 3 resent, 1 new)", st.DroppedDuplicate, st.Forwarded["TELEMETRY"])
	}
	return f
}

// A reading a local app published on a wildcard subject is never
// forwarded: skipped, counted, its subject shown in status. nats-server
// stores it (only a client that connects pedantic is refused). Before,
// the hub got a literal edge.<site>.telemetry.* message.
func TestForwarderWildcardSubjectSkipped(t *testing.T) {
	e := newFwEnv(t, "s1", fwEnvOpts{})
	e.leafUp()
	e.publish("telemetry.x", 1, []byte("ok 1"))
	e.publish("telemetry.*", 1, []byte("star"))
	e.publish("telemetry.>", 1, []byte("gt"))
	e.publish("telemetry.x", 1, []byte("ok 4"))
	f := e.start(nil)
	e.waitCursor("TELEMETRY", 4, 20*time.Second, "cursor past the wildcard readings")
	msgs := e.hubMsgs()
	if len(msgs) != 2 || string(msgs[0].Data()) != "ok 1" || string(msgs[1].Data()) != "ok 4" {
		var subjects []string
		for _, m := range msgs {
			subjects = append(subjects, m.Subject())
		}
		t.Fatalf("hub has %v, want the two literal readings only", subjects)
	}
	st := f.Status()
	if st.Rejected != 2 || !strings.Contains(st.LastRejected, "TELEMETRY seq 3 on telemetry.>") || !strings.Contains(st.LastRejected, "wildcard") {
		t.Fatalf("rejected %d (want 2), last %q", st.Rejected, st.LastRejected)
	}
}
