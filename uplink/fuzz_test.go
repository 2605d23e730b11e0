package uplink

import (
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/edge-agent/edge-agent/buffer"
	"github.com/edge-agent/edge-agent/internal/testkit/teststate"
)

// hdrMsg is a stored local message as fillHubHeaders sees it: only the subject
// and the headers a local app attached.
type hdrMsg struct {
	jetstream.Msg // nil: fillHubHeaders must not need anything else
	subject       string
	h             nats.Header
}

func (m hdrMsg) Headers() nats.Header { return m.h }
func (m hdrMsg) Subject() string      { return m.subject }

// FuzzHubHeaders feeds the header block a local app may attach (raw NATS
// wire format, decoded by the client library as the forwarder receives it)
// through the forwarder's header building. Whatever the app sends, the hub
// message carries exactly one Nats-Msg-Id, the forwarder's own, no other
// Nats-* header (those would steer the hub stream's de-duplication), and
// Edge-* headers an app cannot spoof; the app's other headers pass intact.
func FuzzHubHeaders(f *testing.F) {
	st, _ := teststate.Open(f)
	fw := &Forwarder{site: "store-1", prefix: "edge", st: st}
	// A session's reused map, values and scratch, which every input
	// follows the previous one into.
	reused, vals, buf, times := nats.Header{}, new([6]string), []byte(nil), new(rfc3339Nano)

	f.Add([]byte("NATS/1.0\r\nTrace: abc\r\n\r\n"), "telemetry.ambient", uint64(1), int64(1767322800123456789))
	f.Add([]byte("NATS/1.0\r\nNats-Msg-Id: app-1\r\nNats-Expected-Last-Sequence: 4\r\nEdge-Site: evil\r\nedge-site: evil2\r\n\r\n"), "alerts.door", uint64(1<<63), int64(0))
	f.Add([]byte("NATS/1.0\r\nNATS-MSG-ID: x\r\nK: v1\r\nK: v2\r\nEdge-Seq: 0\r\n\r\n"), "telemetry.a.b", uint64(42), int64(-1))
	f.Add([]byte("NATS/1.0 503\r\n\r\n"), "telemetry.x", uint64(0), int64(1))
	f.Add([]byte("NATS/1.0\r\n\r\n"), "telemetry.x", uint64(7), int64(1767322800000000000))
	f.Add([]byte("NATS/1.0\r\nTrace: abc\r\n\r\n"), "telemetry.x", uint64(8), int64(1767322800000000001))
	f.Fuzz(func(t *testing.T, block []byte, subject string, seq uint64, unixNano int64) {
		in, err := nats.DecodeHeadersMsg(block)
		if err != nil {
			return
		}
		stream := buffer.StreamTelemetry
		if strings.HasPrefix(subject, "alerts.") {
			stream = buffer.StreamAlerts
		}
		ts := time.Unix(0, unixNano)
		fresh := func(m hdrMsg) nats.Header {
			h, _ := fw.fillHubHeaders(nats.Header{}, new([6]string), nil, new(rfc3339Nano), m, seq, ts, stream)
			return h
		}
		m := hdrMsg{subject: subject, h: in}
		out := fresh(m)
		// This input, then the same reading without headers twice: the
		// second takes the shortcut that keeps the map as it is.
		for i, m := range []hdrMsg{m, {subject: subject}, {subject: subject}} {
			reused, buf = fw.fillHubHeaders(reused, vals, buf, times, m, seq, ts, stream)
			if want := fresh(m); !reflect.DeepEqual(reused, want) {
				t.Fatalf("headers built in the session's reused map (step %d) %q, want %q as built anew", i, reused, want)
			}
		}

		own := map[string]string{
			nats.MsgIdHdr: fw.MsgID(stream, seq),
			HdrSubject:    subject,
			HdrSite:       "store-1",
			HdrStream:     stream,
			HdrSeq:        strconv.FormatUint(seq, 10),
			HdrTime:       ts.UTC().Format(time.RFC3339Nano),
		}
		for k, want := range own {
			if got := out[k]; len(got) != 1 || got[0] != want {
				t.Fatalf("header %s = %q, want exactly [%q]; app headers %q", k, got, want, in)
			}
		}
		for k, v := range out {
			if _, ok := own[k]; ok {
				continue
			}
			if strings.HasPrefix(strings.ToLower(k), "nats-") {
				t.Fatalf("app header %s reached the hub: it would steer the hub stream", k)
			}
			if !reflect.DeepEqual(v, in[k]) {
				t.Fatalf("app header %s = %q at the hub, sent %q", k, v, in[k])
			}
		}
		for k := range in {
			if _, ok := own[k]; !ok && !strings.HasPrefix(strings.ToLower(k), "nats-") && out[k] == nil {
				t.Fatalf("app header %s was dropped", k)
			}
		}
		if got := parseHubMsgID(t, out.Get(nats.MsgIdHdr)); got != seq {
			t.Fatalf("Nats-Msg-Id %s does not end in the local sequence %d", out.Get(nats.MsgIdHdr), seq)
		}
	})
}

// parseHubMsgID reads the sequence back out of <site>.<store-id>.<stream>.<seq>,
// as hub-side tools (and the chaos audit) do.
func parseHubMsgID(t *testing.T, id string) uint64 {
	t.Helper()
	parts := strings.Split(id, ".")
	if len(parts) != 4 || parts[0] != "store-1" || parts[1] == "" {
		t.Fatalf("Nats-Msg-Id %q is not <site>.<store-id>.<stream>.<seq>", id)
	}
	seq, err := strconv.ParseUint(parts[3], 10, 64)
	if err != nil {
		t.Fatalf("Nats-Msg-Id %q: %v", id, err)
	}
	return seq
}
