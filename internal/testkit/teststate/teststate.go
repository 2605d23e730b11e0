// Package teststate opens the agent's state.db for the tests of the
// packages that keep records in it (sensors, uplink, buffer's external
// tests). It is apart from testkit because it imports buffer, whose own
// tests import testkit.
package teststate

import (
	"path/filepath"
	"testing"

	"github.com/edge-agent/edge-agent/buffer"
)

// Open opens a new state.db in a temporary directory, closed when the test
// ends, and returns it with its path.
func Open(t testing.TB) (*buffer.State, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "state.db")
	st, err := buffer.OpenState(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st, path
}

// ReopenReadOnly closes st, whose file is path, and opens the file again
// read-only, as `edge-agent status` does while the daemon is down; the
// read-only state is closed when the test ends.
func ReopenReadOnly(t testing.TB, st *buffer.State, path string) *buffer.State {
	t.Helper()
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	ro, err := buffer.OpenStateReadOnly(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ro.Close() })
	return ro
}
