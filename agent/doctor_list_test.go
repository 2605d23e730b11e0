package agent

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
)

// TestDoctorOrder pins the checks doctor runs, in order: all of them on a
// usable config, only those needing none (clock, power) on a broken one.
func TestDoctorOrder(t *testing.T) {
	d := NewDoctor()
	d.ThrottledPath = filepath.Join(t.TempDir(), "absent")
	names := func(path string) []string {
		var out []string
		for _, c := range d.Run(context.Background(), path) {
			out = append(out, c.Name)
		}
		return out
	}
	dir := t.TempDir()
	ok := writeFile(t, dir, "agent.yaml", fmt.Sprintf("site: s1\nstate_dir: %s\ncontrol_socket: %s\n", dir, filepath.Join(dir, "agent.sock")), 0o600)
	if got, want := names(ok), []string{"config", "state_dir", "clock", "power", "hub"}; !slices.Equal(got, want) {
		t.Errorf("standalone config: checks %v, want %v", got, want)
	}
	bad := writeFile(t, dir, "bad.yaml", "site: [\n", 0o600)
	if got, want := names(bad), []string{"config", "clock", "power"}; !slices.Equal(got, want) {
		t.Errorf("broken config: checks %v, want %v", got, want)
	}
}
