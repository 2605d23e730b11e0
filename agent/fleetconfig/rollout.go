package fleetconfig

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Rollout stages a new group fragment: each wave's sites get it under their
// rollout.<group>.<site> key (which replaces group.<group> for them only),
// and the rollout waits for each of them to report applied, rejected or
// rolled back. When more than AbortOn of a wave did not apply it, every
// rollout key written is deleted, so those sites go back to the group
// fragment, and the rollout stops. After the last wave the fragment becomes
// group.<group> (compare-and-set against the revision read at the start)
// and the rollout keys go.
type Rollout struct {
	KV    jetstream.KeyValue
	Group string
	Data  []byte
	// Waves are cumulative fractions of the group's sites, the last 1.
	Waves []float64
	// AbortOn is the fraction of a wave that may fail.
	AbortOn float64
	// Reports reads every site's last report (the hub's heartbeat table).
	Reports func(ctx context.Context) (map[string]Report, error)
	// Wait bounds each wave; a site that has not answered by then counts
	// as failed.
	Wait time.Duration
	Poll time.Duration
	Out  io.Writer
}

// ParseWaves reads "5%,25%,100%".
func ParseWaves(s string) ([]float64, error) {
	var out []float64
	for _, p := range strings.Split(s, ",") {
		f, err := ParsePercent(p)
		if err != nil {
			return nil, err
		}
		if len(out) > 0 && f <= out[len(out)-1] {
			return nil, fmt.Errorf("--waves %q: each wave must cover more sites than the one before", s)
		}
		out = append(out, f)
	}
	if len(out) == 0 || out[len(out)-1] != 1 {
		return nil, fmt.Errorf("--waves %q: the last wave must be 100%%", s)
	}
	return out, nil
}

// ParsePercent reads "10%" (or "10") as 0.1.
func ParsePercent(s string) (float64, error) {
	f, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(s), "%"), 64)
	if err != nil || f < 0 || f > 100 {
		return 0, fmt.Errorf("%q is not a percentage such as 25%%", s)
	}
	return f / 100, nil
}

// ErrAborted is a rollout stopped by its threshold.
type ErrAborted struct {
	Wave       int
	Failed, Of int
	Why        []string
}

func (e *ErrAborted) Error() string {
	return fmt.Sprintf("rollout aborted in wave %d: %d of %d sites did not apply it (%s); the rollout keys are deleted, those sites are back on the group fragment", e.Wave, e.Failed, e.Of, strings.Join(e.Why, "; "))
}

// Run runs the rollout.
func (r *Rollout) Run(ctx context.Context) error {
	if r.Poll == 0 {
		r.Poll = time.Second
	}
	groupKey := GroupKey(r.Group)
	var groupRev uint64
	switch e, err := r.KV.Get(ctx, groupKey); {
	case err == nil:
		groupRev = e.Revision()
	case errors.Is(err, jetstream.ErrKeyNotFound), errors.Is(err, jetstream.ErrKeyDeleted):
	default:
		return fmt.Errorf("read %s: %w", groupKey, err)
	}
	reports, err := r.Reports(ctx)
	if err != nil {
		return err
	}
	var sites []string
	for s, rep := range reports {
		if slices.Contains(rep.Groups, r.Group) {
			sites = append(sites, s)
		}
	}
	slices.Sort(sites)
	if len(sites) == 0 {
		return fmt.Errorf("no site has reported group %s (sites report their groups in their heartbeat once remote_config is enabled); use `fleet config set --group %s` to write it directly", r.Group, r.Group)
	}
	var written []string
	revert := func() {
		for _, s := range written {
			_ = r.KV.Delete(context.WithoutCancel(ctx), RolloutKey(r.Group, s))
		}
	}
	done := 0
	for i, w := range r.Waves {
		upto := int(math.Ceil(w * float64(len(sites))))
		wave := sites[done:upto]
		if len(wave) == 0 {
			continue
		}
		fmt.Fprintf(r.Out, "wave %d: %d site(s): %s\n", i+1, len(wave), strings.Join(wave, " "))
		revs := map[string]uint64{}
		for _, s := range wave {
			rev, err := r.KV.Put(ctx, RolloutKey(r.Group, s), r.Data)
			if err != nil {
				revert()
				return fmt.Errorf("write %s: %w", RolloutKey(r.Group, s), err)
			}
			written = append(written, s)
			revs[s] = rev
		}
		failed, why, err := r.await(ctx, revs)
		if err != nil {
			revert()
			return err
		}
		fmt.Fprintf(r.Out, "wave %d: %d applied, %d failed\n", i+1, len(wave)-len(failed), len(failed))
		if float64(len(failed)) > r.AbortOn*float64(len(wave)) {
			revert()
			return &ErrAborted{Wave: i + 1, Failed: len(failed), Of: len(wave), Why: why}
		}
		done = upto
	}
	rev, err := Put(ctx, r.KV, groupKey, r.Data, groupRev)
	if err != nil {
		return fmt.Errorf("every wave applied, but the group fragment was not written: %w (the rollout keys stay; write %s and delete them by hand)", err, groupKey)
	}
	// Sites watch each key on its own: deleting a rollout key before the
	// site holds the new group fragment would flap it back to the old one.
	if err := r.awaitSeen(ctx, written, rev); err != nil {
		return err
	}
	revert()
	fmt.Fprintf(r.Out, "%s: revision %d; rollout keys removed\n", groupKey, rev)
	return nil
}

// await waits until each site reported on at least its rollout revision.
func (r *Rollout) await(ctx context.Context, revs map[string]uint64) (failed, why []string, err error) {
	deadline := time.Now().Add(r.Wait)
	for {
		reports, err := r.Reports(ctx)
		if err != nil {
			return nil, nil, err
		}
		failed, why = nil, nil
		waiting := 0
		for s, rev := range revs {
			rep, ok := reports[s]
			switch {
			case !ok || rep.DesiredRev < rev || rep.State == StatePending:
				waiting++
				if time.Now().After(deadline) {
					failed = append(failed, s)
					why = append(why, s+": no answer in "+r.Wait.String())
				}
			case rep.State == StateApplied && rep.AppliedRev >= rev:
			default:
				failed = append(failed, s)
				why = append(why, s+": "+rep.State+": "+rep.Error)
			}
		}
		if waiting == 0 || time.Now().After(deadline) {
			slices.Sort(failed)
			slices.Sort(why)
			return failed, why, nil
		}
		select {
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		case <-time.After(r.Poll):
		}
	}
}

// awaitSeen waits until every site has seen revision rev (or Wait passes:
// a silent site then flaps back briefly, and converges).
func (r *Rollout) awaitSeen(ctx context.Context, sites []string, rev uint64) error {
	deadline := time.Now().Add(r.Wait)
	for {
		reports, err := r.Reports(ctx)
		if err != nil {
			return err
		}
		if !slices.ContainsFunc(sites, func(s string) bool { return reports[s].DesiredRev < rev }) || time.Now().After(deadline) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(r.Poll):
		}
	}
}
