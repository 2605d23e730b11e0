package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/edge-agent/edge-agent/uplink"
)

// localStreams are the agent's streams (buffer.StreamAlerts/Telemetry); the
// names are the subject contract, so the harness spells them out.
var localStreams = []string{"ALERTS", "TELEMETRY"}

// streamSeq names one local message. After a damaged store reuses
// sequence numbers (a new message-id epoch), two different messages share a
// (stream, seq): the time the local stream stored each one tells them apart.
type streamSeq struct {
	stream string
	seq    uint64
	stored string // RFC3339Nano, UTC: Edge-Time at the hub
}

// contents is what one side (local streams or the hub) holds.
type contents struct {
	ids  map[string]int    // harness payload id -> copies
	seqs map[streamSeq]int // local message -> copies (hub: from its headers)
	msgs int               // every message, sensor readings included
}

func newContents() *contents {
	return &contents{ids: map[string]int{}, seqs: map[streamSeq]int{}}
}

func (c *contents) add(data []byte, ss streamSeq) {
	c.msgs++
	if ss.stream != "" {
		c.seqs[ss]++
	}
	var p payload
	if json.Unmarshal(data, &p) == nil && p.ID != "" {
		c.ids[p.ID]++
	}
}

// readStream visits every message of stream matching filter with an
// ephemeral, unacknowledged consumer: reading must not change what it audits.
func readStream(ctx context.Context, js jetstream.JetStream, stream, filter string, visit func(jetstream.Msg)) error {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return fmt.Errorf("stream %s: %w", stream, err)
	}
	cfg := jetstream.ConsumerConfig{AckPolicy: jetstream.AckNonePolicy, MemoryStorage: true, InactiveThreshold: time.Minute}
	if filter != "" {
		cfg.FilterSubject = filter
	}
	c, err := s.CreateConsumer(ctx, cfg)
	if err != nil {
		return fmt.Errorf("audit consumer on %s: %w", stream, err)
	}
	defer func() { _ = s.DeleteConsumer(context.Background(), c.CachedInfo().Name) }()
	left := c.CachedInfo().NumPending
	for left > 0 {
		batch, err := c.Fetch(int(min(left, 1000)), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return fmt.Errorf("read %s: %w", stream, err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			visit(m)
			if md, err := m.Metadata(); err == nil {
				left = md.NumPending
			}
		}
		if batch.Error() != nil {
			return fmt.Errorf("read %s: %w", stream, batch.Error())
		}
		if n == 0 {
			return fmt.Errorf("read %s: no messages in 5s with %d pending", stream, left)
		}
	}
	return nil
}

// readLocal reads the agent's own streams through its client port.
func readLocal(ctx context.Context, url string) (*contents, error) {
	nc, err := nats.Connect(url, nats.Name("chaos-audit"))
	if err != nil {
		return nil, fmt.Errorf("connect to agent %s: %w", url, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	c := newContents()
	for _, s := range localStreams {
		err := readStream(ctx, js, s, "", func(m jetstream.Msg) {
			md, _ := m.Metadata()
			ss := streamSeq{stream: s}
			if md != nil {
				ss.seq, ss.stored = md.Sequence.Stream, md.Timestamp.UTC().Format(time.RFC3339Nano)
			}
			c.add(m.Data(), ss)
		})
		if err != nil {
			return nil, err
		}
	}
	return c, nil
}

// readHub reads the site's messages from EDGE; each carries the local
// (stream, seq) it came from in its Nats-Msg-Id,
// <site>.<epoch-id>.<stream>.<seq>, and the local store time in Edge-Time.
func readHub(ctx context.Context, js jetstream.JetStream, site string) (*contents, error) {
	c := newContents()
	err := readStream(ctx, js, hubStream, "edge."+site+".>", func(m jetstream.Msg) {
		ss := parseMsgID(m.Headers().Get(nats.MsgIdHdr))
		ss.stored = m.Headers().Get(uplink.HdrTime)
		c.add(m.Data(), ss)
	})
	return c, err
}

func parseMsgID(id string) streamSeq {
	parts := strings.Split(id, ".")
	if len(parts) < 4 {
		return streamSeq{}
	}
	seq, err := strconv.ParseUint(parts[len(parts)-1], 10, 64)
	if err != nil {
		return streamSeq{}
	}
	return streamSeq{stream: parts[len(parts)-2], seq: seq}
}

// verdict compares the ack log with what each side holds.
type verdict struct {
	acked        int
	localLost    int // acked, not in the local streams
	localDup     int // acked, more than once locally
	atHub        int // acked and at the hub
	hubLost      int // acked, not at the hub
	stuck        int // acked, in the local streams, yet not at the hub
	hubDup       int // acked, more than once at the hub
	notForwarded int // local messages (any publisher) the hub does not have
	hubExtra     int // hub copies beyond one of the same local message
}

func judge(acked []string, local, hub *contents) verdict {
	v := verdict{acked: len(acked)}
	for _, id := range acked {
		if n := local.ids[id]; n == 0 {
			v.localLost++
		} else if n > 1 {
			v.localDup++
		}
		if hub == nil {
			continue
		}
		switch n := hub.ids[id]; {
		case n == 0:
			v.hubLost++
			if local.ids[id] > 0 {
				v.stuck++
			}
		case n > 1:
			v.atHub++
			v.hubDup++
		default:
			v.atHub++
		}
	}
	if hub != nil {
		for ss := range local.seqs {
			if hub.seqs[ss] == 0 {
				v.notForwarded++
			}
		}
		// One local message (same stream, seq and store time) stored twice
		// at the hub is a duplicate whatever ids it was sent under; the same
		// (stream, seq) with two store times is two messages (a new epoch).
		for _, n := range hub.seqs {
			v.hubExtra += n - 1
		}
	}
	return v
}
