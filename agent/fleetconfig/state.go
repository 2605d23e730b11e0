package fleetconfig

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// State is the site's record of remote config, one JSON file written by
// rename: a site killed in the middle of an apply finds either the old
// state or the new one, so it boots on the old config or the new one,
// never a mix of both.
type State struct {
	// Applied is the last-known-good set: the one that passed its gate.
	Applied Set `json:"applied"`
	// Trial is the set being gated; nil when none.
	Trial *Trial `json:"trial,omitempty"`
	// Refused is the last set rejected or rolled back: it is not tried
	// again until a fragment changes.
	Refused *Set `json:"refused,omitempty"`
	// Merged is the effective config of the running set with secrets
	// redacted, for operators; the agent always merges again from the
	// local file and the fragments.
	Merged string `json:"merged,omitempty"`
	Report Report `json:"report"`
}

// Trial is a set under the health gate, with what the gate compares to.
type Trial struct {
	Set     Set       `json:"set"`
	Started time.Time `json:"started"`
	// Boots counts agent starts on this trial: a second one means the
	// agent died during the gate, and the trial is reverted.
	Boots int `json:"boots"`
	// Restart says the trial needed a restart to take effect, so a
	// rollback needs one too.
	Restart bool `json:"restart,omitempty"`
	// LinkWasUp and Failing are the site before the apply.
	LinkWasUp bool     `json:"link_was_up"`
	Failing   []string `json:"failing,omitempty"`
	Merged    string   `json:"merged,omitempty"`
}

// StatePath is where the state lives under the agent's state_dir.
func StatePath(stateDir string) string { return filepath.Join(stateDir, "remote-config.json") }

// ReadState loads the state; a missing file is the zero state.
func ReadState(stateDir string) (State, error) {
	var st State
	data, err := os.ReadFile(StatePath(stateDir))
	if errors.Is(err, os.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(data, &st); err != nil {
		return State{}, fmt.Errorf("%s: %w (remove it to start over from the local file)", StatePath(stateDir), err)
	}
	return st, nil
}

// WriteState replaces the state atomically: temp file, fsync, rename,
// fsync of the directory.
func WriteState(stateDir string, st State) error {
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	return WriteAtomic(StatePath(stateDir), data)
}

// WriteAtomic writes path so that a crash leaves the old or the new
// content, never a torn file.
func WriteAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
