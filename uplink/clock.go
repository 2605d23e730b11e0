package uplink

import (
	"encoding/json"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/edge-agent/edge-agent/uplink/wire"
)

// maxClockRTT discards samples whose round trip is too long for the offset
// to mean anything (the error is up to half the round trip).
const maxClockRTT = 5 * time.Second

// ClockSample is the agent's wall clock minus the hub's, measured on one
// heartbeat round trip: positive when the site's clock is ahead.
type ClockSample struct {
	Offset time.Duration
	RTT    time.Duration
	At     time.Time // when measured (agent wall clock)
}

// HubClock is the last offset measured against the hub; false until a
// heartbeat came back from a hub whose status stream republishes them.
func (h *Heartbeater) HubClock() (ClockSample, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.clock, !h.clock.At.IsZero()
}

// hearClock matches a republished heartbeat to the one this instance sent
// last (by its send time) and turns the hub's store time into an offset:
// the hub stored it between our send and our receipt, so the offset is
// taken against the midpoint.
func (h *Heartbeater) hearClock(m *nats.Msg) {
	recvMono := time.Now()
	hubTS, err := time.Parse(time.RFC3339Nano, m.Header.Get(jetstream.TimeStampHeaer))
	if err != nil {
		return
	}
	var hb wire.Heartbeat
	if json.Unmarshal(m.Data, &hb) != nil || hb.Instance != h.o.Instance || hb.Sent == 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if hb.Sent != h.sentWall.UnixMilli() {
		return // an older heartbeat, or the twin's
	}
	rtt := recvMono.Sub(h.sentMono)
	if rtt < 0 || rtt > maxClockRTT {
		return
	}
	mid := h.sentWall.Add(rtt / 2)
	h.clock = ClockSample{Offset: mid.Sub(hubTS), RTT: rtt, At: mid}
}
