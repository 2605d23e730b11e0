// Package fleetconfig is desired-state configuration from the hub: YAML
// fragments of the agent's own config schema in a hub KV bucket under the
// keys fleet, group.<name> and site.<site>, merged over the site's local
// file in that order, checked against the local file's allow list, applied
// under a health gate and rolled back when the gate fails. The site keeps
// its copy of the fragments in its own JetStream domain, so applying never
// needs the hub; what it did is reported in the heartbeat.
//
// The package knows nothing of the agent's Config type: the agent hands it
// a validator, which keeps the strict check-config validator the only one.
package fleetconfig

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Bucket is the hub KV bucket holding the desired fragments.
const Bucket = "EDGE_CONFIG"

// Key names. A rollout key pins one site of a group to a staged fragment
// while the group key still holds the previous one (see Rollout).
const (
	FleetKey = "fleet"
)

// GroupKey is the key of a group's fragment.
func GroupKey(g string) string { return "group." + g }

// SiteKey is the key of one site's fragment.
func SiteKey(s string) string { return "site." + s }

// RolloutKey is a site's staged copy of a group fragment during a rollout:
// while it exists the site uses it in place of group.<g>.
func RolloutKey(g, site string) string { return "rollout." + g + "." + site }

var tokenRE = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// ValidName reports whether s can be a group or site name in a key: one
// NATS subject token, as site ids already are.
func ValidName(s string) bool { return tokenRE.MatchString(s) }

// KeysFor lists the keys that concern a site, in merge order. For each
// group the rollout key comes right after the group key and replaces it
// when present (Desired handles that).
func KeysFor(site string, groups []string) []string {
	keys := []string{FleetKey}
	for _, g := range groups {
		keys = append(keys, GroupKey(g), RolloutKey(g, site))
	}
	return append(keys, SiteKey(site))
}

// Fragment is one key's value as the site last saw it. A deleted key is
// kept with Deleted set, so its revision still counts as seen.
type Fragment struct {
	Key     string `json:"key"`
	Rev     uint64 `json:"rev"`
	Data    string `json:"data,omitempty"`
	Deleted bool   `json:"deleted,omitempty"`
}

func (f Fragment) String() string {
	if f.Rev == 0 {
		return f.Key
	}
	return fmt.Sprintf("%s@%d", f.Key, f.Rev)
}

// Set is the fragments a site merges, in merge order, plus the highest
// revision among every key it saw (deleted ones included): the number the
// fleet compares to tell whether a site is current.
type Set struct {
	Fragments []Fragment `json:"fragments"`
	Rev       uint64     `json:"rev"`
}

// Desired picks, from what the site holds for each key (missing keys
// absent from have), the fragments to merge: deleted keys are dropped, and
// a group's rollout fragment replaces the group fragment.
func Desired(site string, groups []string, have map[string]Fragment) Set {
	var s Set
	for _, k := range KeysFor(site, groups) {
		f, ok := have[k]
		if !ok {
			continue
		}
		s.Rev = max(s.Rev, f.Rev)
		if f.Deleted {
			continue
		}
		if strings.HasPrefix(k, "rollout.") {
			// The group fragment was appended just before: replace it.
			g := GroupKey(strings.TrimSuffix(strings.TrimPrefix(k, "rollout."), "."+site))
			s.Fragments = slices.DeleteFunc(s.Fragments, func(x Fragment) bool { return x.Key == g })
		}
		s.Fragments = append(s.Fragments, f)
	}
	return s
}

// Same reports whether two sets merge the same fragments at the same
// revisions.
func (s Set) Same(o Set) bool {
	return slices.EqualFunc(s.Fragments, o.Fragments, func(a, b Fragment) bool { return a.Key == b.Key && a.Rev == b.Rev })
}

// Describe is the set for a status line: "fleet@3 group.north@7".
func (s Set) Describe() string {
	if len(s.Fragments) == 0 {
		return "no fragments"
	}
	parts := make([]string, len(s.Fragments))
	for i, f := range s.Fragments {
		parts[i] = f.String()
	}
	return strings.Join(parts, " ")
}

// States of the reported config.
const (
	StatePending    = "pending"
	StateApplied    = "applied"
	StateRejected   = "rejected"
	StateRolledBack = "rolled_back"
)

// Report is what a site says about its desired state: in every heartbeat
// (field "cfg") and in `edge-agent status`. DesiredRev is the highest
// revision the site has seen of its keys, AppliedRev that of the set it
// runs. The fields are generic on purpose: a later agent update, a signed
// artifact as desired state, reports the same way under its own field.
type Report struct {
	DesiredRev   uint64    `json:"desired_rev"`
	AppliedRev   uint64    `json:"applied_rev"`
	State        string    `json:"state"`
	Error        string    `json:"error,omitempty"`
	AgentVersion string    `json:"agent_version"`
	At           time.Time `json:"at"`
	// Groups are the site's groups from its local file: the hub needs them
	// to tell which revision is the latest for the site.
	Groups []string `json:"groups,omitempty"`
	// Fragments is the applied set, e.g. "fleet@3 site.s1@9".
	Fragments string `json:"fragments,omitempty"`
	// Sync is the last problem reaching the hub bucket ("" when fine).
	Sync string `json:"sync,omitempty"`
}

// Line is the report for `edge-agent status`: where the config comes from
// and, when the last desired set did not stick, why.
func (r Report) Line() string {
	src := "local file"
	if r.Fragments != "" && r.Fragments != "no fragments" {
		src += " + " + r.Fragments
	}
	line := fmt.Sprintf("%s (applied rev %d", src, r.AppliedRev)
	if r.DesiredRev != r.AppliedRev {
		line += fmt.Sprintf(", desired rev %d", r.DesiredRev)
	}
	line += ")"
	if r.State != StateApplied {
		line += ", " + r.State
	}
	if r.Error != "" {
		line += ": " + r.Error
	}
	if r.Sync != "" {
		line += "; hub sync: " + r.Sync
	}
	return line
}

// Brief bounds the free-text fields for the heartbeat, which a hub reads
// for every site; `edge-agent status` on the site has them whole.
func (r Report) Brief(n int) Report {
	for _, f := range []*string{&r.Error, &r.Sync} {
		if len(*f) > n {
			*f = (*f)[:n] + "..."
		}
	}
	return r
}
