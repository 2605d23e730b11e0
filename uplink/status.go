package uplink

import (
	"time"

	"github.com/edge-agent/edge-agent/uplink/wire"
)

// LinkState is the link as status, metrics and the heartbeat show it; the
// type is the heartbeat's (uplink/wire), the values are the link's.
type LinkState = wire.LinkState

// Link states.
const (
	StateConnecting   LinkState = "connecting"
	StateConnected    LinkState = "connected"
	StateDisconnected LinkState = "disconnected"
)

// ReasonClass says what kind of problem keeps the link or the forwarder
// from working: what a technician must fix differs for each. Empty means
// none. The type is the heartbeat's (uplink/wire), the values the link's.
type ReasonClass = wire.ReasonClass

// Reason classes.
const (
	ReasonDNS        ReasonClass = "dns"
	ReasonTCP        ReasonClass = "tcp"
	ReasonTLS        ReasonClass = "tls"
	ReasonAuth       ReasonClass = "auth"
	ReasonPermission ReasonClass = "permission"
	ReasonHubStream  ReasonClass = "hub_stream"
	ReasonDuplicate  ReasonClass = "duplicate_site"
	ReasonHubBusy    ReasonClass = "hub_busy" // the hub stream answered 429: too many requests
	ReasonOther      ReasonClass = "other"
)

// LinkStatus is the leaf connection as status shows it.
type LinkStatus struct {
	State       LinkState   `json:"state"`
	Hub         string      `json:"hub,omitempty"` // URL currently (or last) connected
	ReasonClass ReasonClass `json:"reason_class,omitempty"`
	Reason      string      `json:"reason,omitempty"` // e.g. "TLS: certificate expired 3 days ago"
	// Fix is the next step for Reason, naming the config key to change
	// where the cause is this site's config.
	Fix string `json:"fix,omitempty"`
	// Since is when the link came up (connected) or went down: a failed
	// attempt or a redial does not move it, so it is the outage's length.
	Since time.Time `json:"since"`
	// DownSince is when the link last dropped, or when the link started if
	// it has not connected since; zero while connected.
	DownSince time.Time `json:"down_since,omitzero"`
	// LastUp is when the link was last up: the moment it dropped (zero
	// while connected, or when it never connected this boot).
	LastUp time.Time `json:"last_up,omitzero"`
	// LastConnected is when the last connection was established.
	LastConnected time.Time `json:"last_connected,omitzero"`
	// Attempts counts the failed connection attempts since DownSince.
	Attempts uint64 `json:"attempts_since_down"`
	// LastOutage is how long the link was down before its current
	// connection; zero while down or before the first connect.
	LastOutage time.Duration `json:"last_outage_ns,omitempty"`
	RTT        time.Duration `json:"rtt_ns,omitempty"`
	// Compression is the leaf connection's compression as nats-server
	// negotiated it while connected (s2_fast, off, ...): "not supported"
	// is a hub older than nats-server 2.10, which leaves a metered link
	// carrying every byte uncompressed whatever uplink.compression says.
	Compression string    `json:"compression,omitempty"`
	Reconnects  uint64    `json:"reconnects"`
	NextAttempt time.Time `json:"next_attempt,omitzero"`
	// SentBytes is what this site has sent towards the hub since the
	// agent started, as it left for the WAN (compressed, encrypted,
	// framed): what a metered link bills.
	SentBytes int64 `json:"sent_bytes"`
}

// ForwarderStatus is store-and-forward progress as status shows it.
type ForwarderStatus struct {
	Forwarded  map[string]uint64 `json:"forwarded"` // per stream, this boot
	InFlight   int               `json:"in_flight"`
	RatePerSec float64           `json:"rate_per_sec"` // recent hub-acked messages/s
	LastAck    time.Time         `json:"last_ack,omitzero"`
	Stalls     uint64            `json:"stalls"`
	LastError  string            `json:"last_error,omitempty"`
	// ReasonClass says what to fix when forwarding is paused (Reason* consts).
	ReasonClass ReasonClass `json:"reason_class,omitempty"`
	// HubStream and HubDomain name the stream whose acks were last seen:
	// proof that readings land in the hub's JetStream, not just cross the leaf.
	HubStream string `json:"hub_stream,omitempty"`
	HubDomain string `json:"hub_domain,omitempty"`
	Rejected  uint64 `json:"rejected"` // messages that can never be forwarded (too large, a wildcard subject), skipped
	// LastRejected says which message was skipped last and why.
	LastRejected string `json:"last_rejected,omitempty"`
	// DroppedDuplicate counts readings the hub acknowledged as duplicates
	// although their message id was new (no earlier process or session can
	// have sent it): the hub holds another message under that id, so the
	// reading is not at the hub. LastDuplicate names the last one.
	DroppedDuplicate uint64 `json:"dropped_as_duplicate"`
	LastDuplicate    string `json:"last_duplicate,omitempty"`
	// Window is the current bound on messages in flight: it starts small,
	// grows while the hub keeps up and halves when the hub stream answers
	// 429 (HubBusy counts those halvings).
	Window  int    `json:"window"`
	HubBusy uint64 `json:"hub_busy"`
	// HeldUntil is the end of the drain ramp after a hub outage: until
	// then only alerts are sent (WithStartJitter). Zero: nothing is held.
	HeldUntil time.Time `json:"telemetry_held_until,omitzero"`
	// Mode is how the forwarder publishes to the hub: ModeBatch (fast
	// batches, a hub ack every N readings) or ModePerMessage (a hub older
	// than nats-server 2.14, a stream without allow_batched, or one with
	// too many open batches); empty until the hub's first answer.
	Mode string `json:"mode,omitempty"`
}
