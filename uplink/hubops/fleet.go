package hubops

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/edge-agent/edge-agent/uplink/wire"
)

// StatusStream is the hub's last-value table of heartbeats: one message per
// site subject, so `edge-agent fleet` reads the whole fleet in one pass
// instead of listening for a heartbeat interval, and a site that went
// silent is still listed with its last words.
const StatusStream = "EDGE_STATUS"

// StatusStreamConfig captures <prefix>.*.status keeping only the latest
// heartbeat of each site. No age limit: a silent site must stay visible
// until an operator removes it (`nats stream purge EDGE_STATUS --subject
// <prefix>.<site>.status`).
func StatusStreamConfig(prefix string) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:              StatusStream,
		Description:       "edge-agent fleet view: last heartbeat of each site (" + prefix + ".<site>.status)",
		Subjects:          []string{wire.StatusSubject(prefix, "*")},
		Storage:           jetstream.FileStorage,
		Retention:         jetstream.LimitsPolicy,
		MaxMsgsPerSubject: 1,
		Discard:           jetstream.DiscardOld,
		// A heartbeat is well under 1 KiB; anything bigger is not one.
		MaxMsgSize:  8 << 10,
		AllowDirect: true,
		RePublish:   clockRepublish(prefix),
	}
}

// clockRepublish is the RePublish of the status stream: <prefix>.<site>.status
// comes back on <prefix>.<site>.clock (wire.ClockSubject) once stored.
func clockRepublish(prefix string) *jetstream.RePublish {
	return &jetstream.RePublish{Source: wire.StatusSubject(prefix, "*"), Destination: prefix + ".{{wildcard(1)}}.clock"}
}

// EnsureStatusStream creates the fleet table, or checks that an existing
// stream of that name still keeps one heartbeat per site.
func EnsureStatusStream(ctx context.Context, js jetstream.JetStream, prefix string) (jetstream.Stream, error) {
	want := StatusStreamConfig(prefix)
	s, err := js.Stream(ctx, want.Name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		if s, err = js.CreateStream(ctx, want); err != nil {
			return nil, fmt.Errorf("create hub stream %s: %w", want.Name, err)
		}
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("look up hub stream %s: %w", want.Name, err)
	}
	if have := s.CachedInfo().Config; have.MaxMsgsPerSubject != 1 || !slices.Contains(have.Subjects, want.Subjects[0]) {
		return s, fmt.Errorf("hub stream %s exists but does not keep one heartbeat per site of %s (max_msgs_per_subject %d, subjects %v): fix it with `nats stream edit %s --subjects %s --max-msgs-per-subject 1`",
			want.Name, want.Subjects[0], have.MaxMsgsPerSubject, have.Subjects, want.Name, want.Subjects[0])
	}
	if have := s.CachedInfo().Config; have.RePublish == nil {
		// A table from before sites measured their clock against the
		// hub: adding the republish changes nothing else.
		have.RePublish = want.RePublish
		if s, err = js.UpdateStream(ctx, have); err != nil {
			return nil, fmt.Errorf("hub stream %s: add the republish to %s that sites read the hub's clock from: %w", want.Name, want.RePublish.Destination, err)
		}
	}
	return s, nil
}

// SiteView is one row of the fleet view.
type SiteView struct {
	Site string `json:"site"`
	// LastSeen is the hub's clock when the heartbeat was stored: a site
	// with a wrong clock still ages correctly.
	LastSeen  time.Time      `json:"last_seen"`
	Silent    bool           `json:"silent"` // not heard for three of its heartbeat intervals (or --stale)
	Heartbeat wire.Heartbeat `json:"heartbeat"`
	Warnings  []string       `json:"warnings"`
	// Rank orders the table, worst first; it is a score, not a contract.
	Rank int `json:"-"`
}

// ClockOffset is the site's clock minus the hub's when the heartbeat was
// stored (the transit time included, so an upper bound for a clock ahead);
// false for heartbeats without a send time (older agents).
func (v SiteView) ClockOffset() (time.Duration, bool) {
	if v.Heartbeat.Sent == 0 {
		return 0, false
	}
	return time.UnixMilli(v.Heartbeat.Sent).Sub(v.LastSeen), true
}

// Backlog sums the unforwarded messages over lanes.
func (v SiteView) Backlog() uint64 {
	var n uint64
	for _, b := range v.Heartbeat.Backlog {
		n += b
	}
	return n
}

// ReadFleet reads the last heartbeat of every site from the status stream.
// An ordered consumer with DeliverLastPerSubject walks the last-value table
// once: thousands of sites cost one pass, not a heartbeat interval's wait.
func ReadFleet(ctx context.Context, js jetstream.JetStream, prefix string) ([]SiteView, error) {
	s, err := js.Stream(ctx, StatusStream)
	if err != nil {
		return nil, fmt.Errorf("hub stream %s: %w (create it with `edge-agent hub init`, or check --server/--domain)", StatusStream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("hub stream %s info: %w", StatusStream, err)
	}
	if info.State.Msgs == 0 {
		return nil, nil
	}
	c, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{wire.StatusSubject(prefix, "*")},
		DeliverPolicy:  jetstream.DeliverLastPerSubjectPolicy,
	})
	if err != nil {
		return nil, fmt.Errorf("read hub stream %s: %w", StatusStream, err)
	}
	// Heartbeats stored while we read are delivered too: keep the newest.
	bySite := map[string]int{}
	var out []SiteView
	for {
		batch, err := c.FetchNoWait(500)
		if err != nil {
			return nil, fmt.Errorf("read hub stream %s: %w", StatusStream, err)
		}
		var pending uint64
		got := 0
		for m := range batch.Messages() {
			got++
			meta, err := m.Metadata()
			if err != nil {
				return nil, fmt.Errorf("read hub stream %s: %w", StatusStream, err)
			}
			pending = meta.NumPending
			v := siteView(prefix, m.Subject(), m.Data(), meta.Timestamp)
			if i, ok := bySite[v.Site]; ok {
				out[i] = v
				continue
			}
			bySite[v.Site] = len(out)
			out = append(out, v)
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return nil, fmt.Errorf("read hub stream %s: %w", StatusStream, err)
		}
		if pending == 0 || got == 0 {
			return out, nil
		}
	}
}

func siteView(prefix, subject string, data []byte, stored time.Time) SiteView {
	v := SiteView{Site: strings.TrimSuffix(strings.TrimPrefix(subject, prefix+"."), ".status"), LastSeen: stored}
	if err := json.Unmarshal(data, &v.Heartbeat); err != nil {
		v.Warnings = append(v.Warnings, fmt.Sprintf("unreadable heartbeat: %v", err))
	}
	return v
}

// Rank marks silent sites and computes warnings, then sorts worst first:
// duplicate identity, silent, down, failing sensors or lost data, degraded,
// then by backlog. stale overrides "three heartbeat intervals" when > 0.
func Rank(sites []SiteView, now time.Time, stale time.Duration) []SiteView {
	for i := range sites {
		v := &sites[i]
		hb := v.Heartbeat
		age := now.Sub(v.LastSeen)
		limit := stale
		if limit <= 0 {
			limit = 3 * time.Duration(max(hb.Interval, 1)) * time.Second
		}
		v.Silent = age > limit
		add := func(score int, msg string) {
			v.Rank += score
			v.Warnings = append(v.Warnings, msg)
		}
		if hb.Dup {
			msg := "DUPLICATE SITE ID: two devices publish as this site"
			if hb.Twin != "" {
				msg += " (other: " + hb.Twin + ")"
			}
			add(1000, msg)
		}
		if v.Silent {
			add(500, "silent for "+age.Round(time.Second).String())
		}
		if hb.State == wire.Down {
			add(300, "down")
		}
		if n := len(hb.Failing); n > 0 {
			add(100+n, fmt.Sprintf("%d sensor(s) failing: %s", n, strings.Join(hb.Failing, ",")))
		}
		if hb.Lost > 0 {
			add(400, fmt.Sprintf("%d acknowledged readings LOST to damage (not acknowledged on site)", hb.Lost))
		}
		if hb.Evicted > 0 {
			add(100, fmt.Sprintf("%d readings evicted unforwarded", hb.Evicted))
		}
		if off, ok := v.ClockOffset(); ok && (off > wire.MaxClockOffset || off < -wire.MaxClockOffset) {
			add(50, fmt.Sprintf("clock off the hub's by %s", off.Round(time.Second)))
		}
		if hb.State == wire.Degraded {
			v.Rank += 10
		}
		for _, w := range hb.Warnings {
			if !strings.HasPrefix(w, "sensor:") && w != "clock" && w != "backlog" {
				v.Warnings = append(v.Warnings, w)
			}
		}
	}
	slices.SortStableFunc(sites, func(a, b SiteView) int {
		return cmp.Or(cmp.Compare(b.Rank, a.Rank), cmp.Compare(b.Backlog(), a.Backlog()), cmp.Compare(a.Site, b.Site))
	})
	return sites
}
