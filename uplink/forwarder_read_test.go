package uplink

import (
	"errors"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
)

// replyMsg is a delivered message as readItem sees it: its reply subject,
// and what jetstream's Metadata says of a subject readItem leaves to it.
type replyMsg struct {
	jetstream.Msg // nil: readItem must not need anything else
	reply         string
}

func (m replyMsg) Reply() string { return m.reply }

var errFallback = errors.New("left to Metadata")

func (m replyMsg) Metadata() (*jetstream.MsgMetadata, error) { return nil, errFallback }

// readItem reads the stream sequence and the time from both shapes of a
// consumer delivery's reply subject, and leaves every other one to
// jetstream's Metadata.
func TestReadItem(t *testing.T) {
	for _, c := range []struct {
		reply string
		seq   uint64
		ts    int64
	}{
		{"$JS.ACK.TELEMETRY.c1.1.42.7.1767322800123456789.0", 42, 1767322800123456789},
		{"$JS.ACK.site.ACCHASH.TELEMETRY.c1.1.42.7.1767322800123456789.0.r4nd", 42, 1767322800123456789},
		{"$JS.ACK._.ACCHASH.ALERTS.c1.3.18446744073709551615.9.1.12", 1<<64 - 1, 1},
	} {
		it, err := readItem(replyMsg{reply: c.reply})
		if err != nil || it.seq != c.seq || it.ts != c.ts {
			t.Errorf("%s: seq %d, time %d, %v; want %d, %d", c.reply, it.seq, it.ts, err, c.seq, c.ts)
		}
	}
	for _, reply := range []string{
		"", "_INBOX.x", "$JS.ACK.S.c.1.2.3.4", "$JS.ACK.d.h.S.c.1.2.3", "$JS.ACK.S.c.1.x.3.4.5", "$JS.ACK.S.c.1.2.3.y.5", "$JS.ACK.S.c.1.2.3.+5.5", "$JS.ACK.S.c.1.2.3.-5.5",
	} {
		if _, err := readItem(replyMsg{reply: reply}); !errors.Is(err, errFallback) {
			t.Errorf("%q: %v, want it left to Metadata", reply, err)
		}
	}
}
