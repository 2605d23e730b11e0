package agent

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/edge-agent/edge-agent/agent/fleetconfig"
	"github.com/edge-agent/edge-agent/sensors"
)

// ErrRestart ends Run when a remote config change (or its rollback) needs a
// fresh process: the server options or the store changed.
var ErrRestart = errors.New("restarting to apply a remote config change")

// ExitRestart is EX_TEMPFAIL: systemd's Restart=on-failure restarts the
// agent on it, unlike ExitConfig.
const ExitRestart = 75

// LoadEffectiveConfig is the config the agent runs: the local file, and
// with remote_config enabled the fragments it last applied (or the one
// under its health gate) merged over it. It changes nothing on disk, so
// SIGHUP uses it; BootConfig is for starting.
func LoadEffectiveConfig(path string) (*Config, error) {
	return loadEffective(path, false)
}

// BootConfig is LoadEffectiveConfig for a starting agent: it counts the
// start against a trial under the health gate, and reverts a trial the
// agent already started on once, since that start ended without the gate
// deciding (a stop, a crash, a kill, a power cut).
func BootConfig(path string) (*Config, error) {
	return loadEffective(path, true)
}

func loadEffective(path string, boot bool) (*Config, error) {
	local, err := LoadConfig(path)
	if err != nil || !local.RemoteConfig.Enabled {
		return local, err
	}
	st, err := fleetconfig.ReadState(local.StateDir)
	if err != nil {
		// The agent part reports it; the local file alone still runs.
		return local, nil
	}
	cfg, changed, err := bootSet(local, &st, boot)
	if err == nil && changed {
		err = writeBootState(local.StateDir, st)
	}
	return cfg, err
}

// bootSet picks the set to run and merges it; on a start it also counts
// the start against a trial, reverts a trial that already had one, gives
// a rejected set another look (the local file may have changed), and
// refuses a set the local file no longer accepts. changed says st must be
// written before the agent runs.
func bootSet(local *Config, st *fleetconfig.State, boot bool) (cfg *Config, changed bool, err error) {
	if boot && st.Report.State == fleetconfig.StateRejected && st.Refused != nil {
		// A rolled-back set stays refused, or a change that cuts the link
		// would restart the agent forever.
		st.Refused, changed = nil, true
	}
	set, trial := st.Applied, false
	if t := st.Trial; t != nil {
		switch {
		case boot && t.Boots >= 1:
			refuse(st, t.Set, fleetconfig.StateRolledBack, "the agent stopped during the health gate (stopped, crashed, killed or lost power); back on the last-known-good config")
			changed = true
		case boot:
			t.Boots++
			set, trial, changed = t.Set, true, true
		default:
			set, trial = t.Set, true
		}
	}
	cfg, err = mergeConfig(local, set)
	if err == nil {
		return cfg, changed, nil
	}
	if !boot {
		// SIGHUP: the running config stays, and the log says why.
		return nil, false, err
	}
	// The local file changed since the set was checked against it: start
	// without the set rather than refuse to start, and say so.
	why := "no longer valid with the local file as it is now: " + err.Error()
	if trial {
		if good, gerr := mergeConfig(local, st.Applied); gerr == nil {
			refuse(st, set, fleetconfig.StateRejected, why)
			return good, true, nil
		}
	}
	st.Applied = fleetconfig.Set{}
	refuse(st, set, fleetconfig.StateRejected, why)
	return local, true, nil
}

func writeBootState(dir string, st fleetconfig.State) error {
	if err := fleetconfig.WriteState(dir, st); err != nil {
		return fmt.Errorf("remote config state: %w", err)
	}
	return nil
}

// refuse records set as rejected or rolled back and drops the trial.
func refuse(st *fleetconfig.State, set fleetconfig.Set, state, why string) {
	st.Trial = nil
	st.Refused = &set
	st.Report.State, st.Report.Error, st.Report.At = state, why, time.Now().UTC()
	st.Report.DesiredRev = max(st.Report.DesiredRev, set.Rev)
	st.Report.AppliedRev = st.Applied.Rev
	st.Report.Fragments = st.Applied.Describe()
}

// mergeConfig merges set over the local file and validates the result with
// the strict validator, after checking each fragment against the allow
// list. Errors name the fragment and the key path.
func mergeConfig(local *Config, set fleetconfig.Set) (*Config, error) {
	data, err := os.ReadFile(local.Path)
	if err != nil {
		return nil, &ConfigError{File: local.Path, Msg: err.Error()}
	}
	allow := local.RemoteConfig.EffectiveAllow()
	for _, f := range set.Fragments {
		if err := CheckFragment("fragment "+f.String(), []byte(f.Data)); err != nil {
			return nil, err
		}
		if err := fleetconfig.CheckAllowed(f, allow); err != nil {
			return nil, err
		}
	}
	merged, err := fleetconfig.Merge(data, set.Fragments)
	if err != nil {
		return nil, err
	}
	cfg, err := ParseConfig(local.Path, merged)
	var ce *ConfigError
	if errors.As(err, &ce) {
		if o := fleetconfig.Origin(set.Fragments, ce.Key); o != "" {
			return nil, &ConfigError{File: "fragment " + o + " (merged over " + local.Path + ")", Key: ce.Key, Msg: ce.Msg}
		}
	}
	if err != nil {
		return nil, err
	}
	return cfg, nil
}

// CheckFragment validates one fragment alone with the check-config
// decoder: unknown keys, wrong types and bad values are refused with the
// key path, and the sections that need nothing site-specific (whole
// sensor definitions, buffer, log level) are validated as a whole. Cross-checks with the
// site's own file run when the site merges it.
func CheckFragment(name string, data []byte) error {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return yamlError(name, nil, err)
	}
	if len(root.Content) == 0 {
		return nil
	}
	if root.Content[0].Kind != yaml.MappingNode {
		return &ConfigError{File: name, Msg: "a fragment is a mapping of agent.yaml keys, e.g. `log_level: debug`"}
	}
	cfg := DefaultConfig()
	cfg.Path, cfg.root = name, &root
	if _, err := cfg.decode(data); err != nil {
		return err
	}
	if _, err := parseLevel(cfg.LogLevel); err != nil {
		return cfg.keyErr("log_level", err.Error())
	}
	if err := cfg.Buffer.Validate(); err != nil {
		return cfg.fieldErr(err)
	}
	// Entries without a driver patch a sensor of the site's file by name;
	// only whole definitions can be checked alone.
	if !slices.ContainsFunc(cfg.Sensors, func(s sensors.Config) bool { return s.Driver == "" }) {
		if err := sensors.ValidateAll(cfg.Sensors); err != nil {
			return cfg.fieldErr(err)
		}
	}
	return nil
}
