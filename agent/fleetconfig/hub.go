package fleetconfig

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
)

// History is how many revisions of each key the hub keeps, for `fleet
// config history` and for putting back an earlier fragment by hand.
const History = 32

// BucketConfig is the hub bucket `edge-agent hub init` creates.
func BucketConfig(replicas int) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:       Bucket,
		Description:  "edge-agent desired config fragments: fleet, group.<name>, site.<site> (docs/FLEET-CONFIG.md)",
		History:      History,
		Storage:      jetstream.FileStorage,
		Replicas:     max(replicas, 1),
		MaxValueSize: 1 << 20,
	}
}

// EnsureBucket creates the bucket or checks an existing one keeps history.
func EnsureBucket(ctx context.Context, js jetstream.JetStream, replicas int) (jetstream.KeyValue, error) {
	kv, err := js.KeyValue(ctx, Bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		if kv, err = js.CreateKeyValue(ctx, BucketConfig(replicas)); err != nil {
			return nil, fmt.Errorf("create hub bucket %s: %w", Bucket, err)
		}
		return kv, nil
	}
	if err != nil {
		return nil, fmt.Errorf("look up hub bucket %s: %w", Bucket, err)
	}
	return kv, nil
}

// OpenBucket opens the hub bucket for the operator CLI, with the fix in
// the error when it does not exist.
func OpenBucket(ctx context.Context, js jetstream.JetStream) (jetstream.KeyValue, error) {
	kv, err := js.KeyValue(ctx, Bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, fmt.Errorf("the hub has no %s bucket: run `edge-agent hub init` first", Bucket)
	}
	if err != nil {
		return nil, fmt.Errorf("hub bucket %s: %w", Bucket, err)
	}
	return kv, nil
}

// ErrConflict is a compare-and-set that lost: someone else wrote the key
// since the revision the operator based the change on.
type ErrConflict struct {
	Key      string
	Expected uint64
	Current  uint64
}

func (e *ErrConflict) Error() string {
	return fmt.Sprintf("%s is at revision %d, not %d: someone changed it since; review `edge-agent fleet config get` and retry with --revision %d", e.Key, e.Current, e.Expected, e.Current)
}

// Put writes a fragment if the key is still at revision expect (0: the key
// must not exist yet, or be deleted), and returns the new revision.
func Put(ctx context.Context, kv jetstream.KeyValue, key string, data []byte, expect uint64) (uint64, error) {
	rev, err := kv.Update(ctx, key, data, expect)
	if err == nil {
		return rev, nil
	}
	if expect == 0 {
		// Create semantics, also over a delete marker.
		if rev, cerr := kv.Create(ctx, key, data); cerr == nil {
			return rev, nil
		}
	}
	cur, gerr := kv.Get(ctx, key)
	switch {
	case errors.Is(gerr, jetstream.ErrKeyNotFound):
		return 0, &ErrConflict{Key: key, Expected: expect, Current: 0}
	case gerr != nil:
		return 0, fmt.Errorf("write %s: %w", key, err)
	}
	if cur.Revision() != expect {
		return 0, &ErrConflict{Key: key, Expected: expect, Current: cur.Revision()}
	}
	return 0, fmt.Errorf("write %s: %w", key, err)
}

// CheckKey refuses a key outside the model.
func CheckKey(key string) error {
	parts := strings.Split(key, ".")
	switch {
	case key == FleetKey:
		return nil
	case len(parts) == 2 && (parts[0] == "group" || parts[0] == "site") && ValidName(parts[1]):
		return nil
	case len(parts) == 3 && parts[0] == "rollout" && ValidName(parts[1]) && ValidName(parts[2]):
		return nil
	}
	return fmt.Errorf("%q is not a config key: use fleet, group.<name> or site.<site>", key)
}

// Latest is the current revision of every key in the bucket, delete
// markers included (a deleted fragment is a change the sites must see):
// one pass over the bucket's last message per key, however many sites.
func Latest(ctx context.Context, kv jetstream.KeyValue) (map[string]uint64, error) {
	w, err := kv.WatchAll(ctx, jetstream.MetaOnly())
	if err != nil {
		return nil, fmt.Errorf("read hub bucket %s: %w", Bucket, err)
	}
	defer func() { _ = w.Stop() }()
	out := map[string]uint64{}
	for {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("read hub bucket %s: %w", Bucket, ctx.Err())
		case e := <-w.Updates():
			if e == nil {
				return out, nil
			}
			out[e.Key()] = e.Revision()
		}
	}
}

// SiteStatus is one site's line in `fleet config status`.
type SiteStatus struct {
	Site string `json:"site"`
	// Latest is the highest revision at the hub among the site's keys.
	Latest uint64 `json:"latest"`
	Report
	// Drift says why the site is not on Latest; "" when it is.
	Drift string `json:"drift,omitempty"`
}

// Status compares each site's report with the bucket.
func Status(latest map[string]uint64, reports map[string]Report) []SiteStatus {
	var out []SiteStatus
	for site, r := range reports {
		s := SiteStatus{Site: site, Report: r}
		for _, k := range KeysFor(site, r.Groups) {
			s.Latest = max(s.Latest, latest[k])
		}
		switch {
		case r.AppliedRev >= s.Latest:
		case r.State == StateRejected || r.State == StateRolledBack:
			s.Drift = r.State + ": " + r.Error
		case r.DesiredRev < s.Latest && r.Sync != "":
			s.Drift = "has not seen rev " + fmt.Sprint(s.Latest) + ": " + r.Sync
		case r.DesiredRev < s.Latest:
			s.Drift = "has not seen rev " + fmt.Sprint(s.Latest) + " (offline, or its heartbeat is older)"
		default:
			s.Drift = r.State
		}
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b SiteStatus) int {
		if (a.Drift == "") != (b.Drift == "") {
			if a.Drift != "" {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Site, b.Site)
	})
	return out
}
