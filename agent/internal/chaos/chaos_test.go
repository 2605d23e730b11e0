package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/edge-agent/edge-agent/internal/testkit"
)

func testHub(t *testing.T) (*hub, jetstream.JetStream) {
	t.Helper()
	h, err := newHub(t.TempDir(), 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.close)
	nc, js, err := h.connect()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	if err := h.ensureStream(context.Background(), js); err != nil {
		t.Fatal(err)
	}
	return h, js
}

func body(id string) []byte {
	b, _ := json.Marshal(payload{ID: id})
	return b
}

// The audit must be able to fail: a lost id, a duplicated id and a local
// message forwarded twice under different store ids are all reported.
func TestAuditFindsLossAndDuplicates(t *testing.T) {
	ctx := context.Background()
	_, js := testHub(t)
	for _, m := range []struct{ id, msgID string }{
		{"a", "s1.store1.TELEMETRY.1"},
		{"b", "s1.store1.TELEMETRY.2"},
		{"b", "s1.store2.TELEMETRY.2"}, // a second store id: the hub cannot de-duplicate
		{"x", "other.store1.TELEMETRY.1"},
	} {
		site := strings.SplitN(m.msgID, ".", 2)[0]
		msg := &nats.Msg{Subject: "edge." + site + ".telemetry.t", Data: body(m.id), Header: nats.Header{}}
		msg.Header.Set(nats.MsgIdHdr, m.msgID)
		if _, err := js.PublishMsg(ctx, msg); err != nil {
			t.Fatal(err)
		}
	}
	hubc, err := readHub(ctx, js, "s1")
	if err != nil {
		t.Fatal(err)
	}
	if hubc.msgs != 3 {
		t.Fatalf("read %d hub messages for site s1, want 3 (the other site's must be filtered out)", hubc.msgs)
	}
	local := newContents()
	for i, id := range []string{"a", "b", "c"} {
		local.add(body(id), streamSeq{stream: "TELEMETRY", seq: uint64(i + 1)})
	}
	v := judge([]string{"a", "b", "c"}, local, hubc)
	want := verdict{acked: 3, atHub: 2, hubLost: 1, stuck: 1, hubDup: 1, notForwarded: 1, hubExtra: 1}
	if v != want {
		t.Fatalf("verdict %+v, want %+v", v, want)
	}
	if v := judge([]string{"a", "b", "c"}, local, nil); v.localLost != 0 || v.hubLost != 0 {
		t.Fatalf("local-only verdict %+v: want nothing lost", v)
	}
}

// The ack log holds exactly the ids whose publish was acknowledged: here
// alerts.chaos has no stream, so none of its ids may appear.
func TestPublisherLogsOnlyAcknowledged(t *testing.T) {
	h, js := testHub(t) // any JetStream server plays the agent here
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, sc := range []jetstream.StreamConfig{{Name: "TELEMETRY", Subjects: []string{"telemetry.>"}}, {Name: "ALERTS", Subjects: []string{"alerts.none"}}} {
		if _, err := js.CreateStream(ctx, sc); err != nil {
			t.Fatal(err)
		}
	}
	logPath := filepath.Join(t.TempDir(), "acked.log")
	p, err := newPublisher(h.clientURLs(), "t", logPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.run(ctx, 2, 0); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 30*time.Second, func() error {
		if !(len(p.ackedIDs()) >= 50 && p.failures() > 0) {
			return errors.New("still waiting for 50 acks and a refused alert")
		}
		return nil
	})
	cancel()
	if err := p.close(); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var logged []string
	for sc := bufio.NewScanner(f); sc.Scan(); {
		logged = append(logged, sc.Text())
	}
	if len(logged) != len(p.ackedIDs()) {
		t.Fatalf("ack log has %d ids, publisher counted %d acks", len(logged), len(p.ackedIDs()))
	}
	local, err := readLocal(context.Background(), h.clientURLs())
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range logged {
		if local.ids[id] != 1 {
			t.Fatalf("acked id %s is stored %d times", id, local.ids[id])
		}
		// ids are <prefix>-<worker>-<n>; every 10th n goes to alerts.chaos.
		if n, _ := strconv.Atoi(id[strings.LastIndexByte(id, '-')+1:]); n%10 == 0 {
			t.Fatalf("id %s went to alerts.chaos, which has no stream, yet it is in the ack log", id)
		}
	}
}

func TestParseMsgID(t *testing.T) {
	for in, want := range map[string]streamSeq{
		"store-1.ab12.TELEMETRY.42": {stream: "TELEMETRY", seq: 42},
		"s.x.ALERTS.1":              {stream: "ALERTS", seq: 1},
		"s.x.ALERTS.nope":           {},
		"TELEMETRY.1":               {},
		"":                          {},
	} {
		if got := parseMsgID(in); got != want {
			t.Errorf("parseMsgID(%q) = %+v, want %+v", in, got, want)
		}
	}
}

// After a damaged store reuses sequence numbers under a new message-id
// epoch, two different messages share (stream, seq) at the hub: they differ
// in their store time and are not duplicates. The same message sent twice
// (same store time) is.
func TestAuditEpochReuseIsNotADuplicate(t *testing.T) {
	local, hub := newContents(), newContents()
	old := streamSeq{stream: "TELEMETRY", seq: 7, stored: "2026-01-01T00:00:00Z"}
	reused := streamSeq{stream: "TELEMETRY", seq: 7, stored: "2026-01-01T00:05:00Z"}
	local.add(body("new"), reused)
	hub.add(body("old"), old)
	hub.add(body("new"), reused)
	if v := judge([]string{"new"}, local, hub); v.hubExtra != 0 || v.notForwarded != 0 || v.atHub != 1 {
		t.Fatalf("epoch reuse judged as %+v: want no extra copies, nothing unforwarded", v)
	}
	hub.add(body("new"), reused)
	if v := judge([]string{"new"}, local, hub); v.hubExtra != 1 || v.hubDup != 1 {
		t.Fatalf("a resent message judged as %+v: want one extra copy", v)
	}
}
