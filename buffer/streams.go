package buffer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Stream names and subjects: part of the subject contract in the README.
const (
	StreamTelemetry = "TELEMETRY"
	StreamAlerts    = "ALERTS"
)

// Lanes lists the agent's streams in forwarding priority order: alarms first.
var Lanes = []string{StreamAlerts, StreamTelemetry}

// StreamConfigs is what the agent's streams must look like for this config.
func StreamConfigs(c Config) []jetstream.StreamConfig {
	alertBytes := max(int64(c.MaxBytes)/10, 1<<20)
	base := func(name, subj string, bytes int64) jetstream.StreamConfig {
		return jetstream.StreamConfig{
			Name:        name,
			Description: "edge-agent local buffer for " + subj + " (limits retention: kept after forwarding for local replay)",
			Subjects:    []string{subj},
			Storage:     jetstream.FileStorage,
			Replicas:    1,
			Retention:   jetstream.LimitsPolicy,
			Discard:     jetstream.DiscardOld,
			MaxBytes:    bytes,
			MaxAge:      c.MaxAge,
			// Never AsyncPersistMode: it silently turns the server's
			// sync_always off for the stream (nats-server stream.go).
			PersistMode: jetstream.DefaultPersistMode,
			// The forwarder's message id makes resends idempotent at the hub; a
			// local window catches local apps that retry a publish.
			Duplicates: 2 * time.Minute,
		}
	}
	return []jetstream.StreamConfig{
		base(StreamAlerts, "alerts.>", alertBytes),
		base(StreamTelemetry, "telemetry.>", int64(c.MaxBytes)-alertBytes),
	}
}

// EnsureStreams creates the agent's streams or reconciles their limits in
// place (max_bytes, max_age, discard, subjects, description: nats-server
// applies these to the existing files, data kept; shrinking max_bytes
// evicts the oldest messages, which is what the operator asked for). A
// difference that would need a new stream (storage, retention, replicas,
// persist mode) is refused with the reason and the commands to resolve it,
// never applied by deleting data.
func EnsureStreams(ctx context.Context, js jetstream.JetStream, c Config) error {
	for _, want := range StreamConfigs(c) {
		s, err := js.Stream(ctx, want.Name)
		switch {
		case errors.Is(err, jetstream.ErrStreamNotFound):
			if _, err := js.CreateStream(ctx, want); err != nil {
				if strings.Contains(err.Error(), "overlap") {
					return fmt.Errorf("create stream %s: %w: another local stream already captures %s; the agent owns that subject space (see the subject contract): move that stream to other subjects", want.Name, err, want.Subjects[0])
				}
				return fmt.Errorf("create stream %s: %w", want.Name, err)
			}
			continue
		case err != nil:
			return fmt.Errorf("look up stream %s: %w", want.Name, err)
		}
		have := s.CachedInfo().Config
		if why := notInPlace(have, want); why != "" {
			return fmt.Errorf("stream %s %s; this cannot be changed in place and the agent never deletes buffered data: back it up (`nats stream backup %s /tmp/%s.bak`), remove it (`nats stream rm %s`) and restart the agent to recreate it", want.Name, why, want.Name, want.Name, want.Name)
		}
		if !inPlaceDiffers(have, want) {
			continue
		}
		upd := have
		upd.MaxBytes, upd.MaxAge, upd.Discard, upd.Subjects, upd.Description = want.MaxBytes, want.MaxAge, want.Discard, want.Subjects, want.Description
		if _, err := js.UpdateStream(ctx, upd); err != nil {
			return fmt.Errorf("update stream %s limits in place (max_bytes %d, max_age %s): %w", want.Name, want.MaxBytes, want.MaxAge, err)
		}
	}
	return nil
}

func notInPlace(have, want jetstream.StreamConfig) string {
	switch {
	case have.Storage != want.Storage:
		return fmt.Sprintf("uses %s storage but the agent needs file storage", have.Storage)
	case have.Retention != want.Retention:
		return fmt.Sprintf("has %s retention but the agent needs limits retention (data stays after forwarding for local replay)", have.Retention)
	case have.Replicas > 1:
		return fmt.Sprintf("has %d replicas but a gateway has one server", have.Replicas)
	case have.PersistMode == jetstream.AsyncPersistMode:
		return "has persist_mode async, which acknowledges writes before they are on disk and overrides buffer.sync"
	}
	return ""
}

func inPlaceDiffers(have, want jetstream.StreamConfig) bool {
	return have.MaxBytes != want.MaxBytes || have.MaxAge != want.MaxAge || have.Discard != want.Discard ||
		!slices.Equal(have.Subjects, want.Subjects) || have.Description != want.Description
}

// AsyncStreams lists local streams with persist_mode async: their acks do
// not mean "on disk" whatever buffer.sync says, and a technician must know.
func AsyncStreams(ctx context.Context, js jetstream.JetStream) ([]string, error) {
	var out []string
	l := js.ListStreams(ctx)
	for si := range l.Info() {
		if si.Config.PersistMode == jetstream.AsyncPersistMode {
			out = append(out, si.Config.Name)
		}
	}
	if err := l.Err(); err != nil {
		return out, fmt.Errorf("list streams: %w", err)
	}
	slices.Sort(out)
	return out, nil
}

// laneMark is the last known extent of a stream, kept in state.db so that a
// start can tell what damage or a power cut took.
type laneMark struct {
	FirstSeq uint64    `json:"first_seq"`
	LastSeq  uint64    `json:"last_seq"`
	Msgs     uint64    `json:"msgs"`
	Time     time.Time `json:"time"`
}

func markKey(stream string) string { return "lane." + stream }

// CheckStreams compares each agent stream with what state.db last knew and
// records what was lost: messages the server reports lost (damaged block
// file), or a tail that went missing (truncation, reset, a power cut with
// buffer.sync set to an interval). When a stream's sequence went backwards
// the store id is rotated and the cursor pulled back, so new messages never
// reuse message ids the hub has already seen (and would drop as duplicates).
// It returns the damage found, one line per stream.
func CheckStreams(ctx context.Context, js jetstream.JetStream, st *State, log *slog.Logger) ([]string, error) {
	var found []string
	for _, name := range Lanes {
		s, err := js.Stream(ctx, name)
		if err != nil {
			return found, fmt.Errorf("check stream %s: %w", name, err)
		}
		state := s.CachedInfo().State
		var before laneMark
		known, err := st.GetJSON(markKey(name), &before)
		if err != nil {
			return found, err
		}
		var why []string
		if lost := state.Lost; lost != nil && len(lost.Msgs) > 0 {
			why = append(why, fmt.Sprintf("server reports %d messages (%d bytes) lost to file damage, sequences %s", len(lost.Msgs), lost.Bytes, seqRange(lost.Msgs)))
		}
		reset := known && state.LastSeq < before.LastSeq
		if reset {
			why = append(why, fmt.Sprintf("last sequence went back from %d to %d: %d acknowledged messages are gone", before.LastSeq, state.LastSeq, before.LastSeq-state.LastSeq))
		} else if missing := missingMsgs(before, state); known && missing > 0 {
			// Holes inside the range: nats-server rebuilt a damaged block
			// without them (or a local app deleted messages).
			why = append(why, fmt.Sprintf("%d messages are missing from inside the sequence range (damaged block file, or deleted by a local app)", missing))
		}
		if len(why) > 0 {
			d := fmt.Sprintf("stream %s: %s (before: seq %d..%d, %d msgs at %s; now: seq %d..%d, %d msgs)", name, strings.Join(why, "; "),
				before.FirstSeq, before.LastSeq, before.Msgs, before.Time.Format(time.RFC3339), state.FirstSeq, state.LastSeq, state.Msgs)
			log.Error("local stream damaged; keeping what is left and serving on", "stream", name, "detail", d)
			st.AddEvent(EventStreamDamaged, d)
			found = append(found, d)
		}
		if reset {
			if c := st.Cursor(name); c > state.LastSeq {
				if err := st.ResetCursor(name, state.LastSeq); err != nil {
					return found, err
				}
			}
			old, id := st.StoreID(), newStoreID()
			if err := st.SetStoreID(id); err != nil {
				return found, err
			}
			log.Warn("store id rotated so new message ids cannot collide with ones the hub has seen", "old", old, "new", id)
		}
		if err := markLane(st, name, state); err != nil {
			return found, err
		}
	}
	return found, nil
}

// missingMsgs is how many messages the stream should hold given what it
// held before, what limits removed from the front since, and what was
// appended since, minus what it holds.
func missingMsgs(before laneMark, now jetstream.StreamState) uint64 {
	want := before.Msgs
	if now.FirstSeq > before.FirstSeq {
		want -= min(want, now.FirstSeq-before.FirstSeq)
	}
	if now.LastSeq > before.LastSeq {
		want += now.LastSeq - before.LastSeq
	}
	if now.Msgs >= want {
		return 0
	}
	return want - now.Msgs
}

func markLane(st *State, name string, s jetstream.StreamState) error {
	return st.PutJSON(markKey(name), laneMark{FirstSeq: s.FirstSeq, LastSeq: s.LastSeq, Msgs: s.Msgs, Time: time.Now().UTC()})
}

// seqRange prints a list of sequences compactly for a log line.
func seqRange(seqs []uint64) string {
	if len(seqs) == 0 {
		return ""
	}
	s := slices.Clone(seqs)
	slices.Sort(s)
	if len(s) == 1 {
		return fmt.Sprint(s[0])
	}
	return fmt.Sprintf("%d..%d", s[0], s[len(s)-1])
}
