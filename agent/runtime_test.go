package agent

import (
	"log/slog"
	"math"
	"runtime/debug"
	"testing"
)

// Without GOGC and GOMEMLIMIT in the environment the daemon aims below a
// quarter of the machine's memory from the start and, once ready,
// collects at half the live heap's growth; either variable set by the
// operator wins.
func TestRuntimeDefaults(t *testing.T) {
	gc, limit := debug.SetGCPercent(100), debug.SetMemoryLimit(math.MaxInt64)
	t.Cleanup(func() { debug.SetGCPercent(gc); debug.SetMemoryLimit(limit) })
	log := slog.New(slog.DiscardHandler)

	t.Setenv("GOGC", "")
	t.Setenv("GOMEMLIMIT", "")
	steady := RuntimeDefaults(log)
	total := machineMemory()
	if total <= 0 {
		t.Fatal("machine memory unknown")
	}
	// The start collects at Go's default; steady, run at READY, sets 50.
	if got := debug.SetGCPercent(100); got != 100 {
		t.Fatalf("GOGC %d before the agent is ready, want Go's default 100", got)
	}
	steady()
	if got := debug.SetGCPercent(100); got != defaultGOGC {
		t.Fatalf("GOGC %d once ready, want %d", got, defaultGOGC)
	}
	if got := debug.SetMemoryLimit(math.MaxInt64); got != total/memoryShare {
		t.Fatalf("memory limit %d, want %d (a quarter of %d)", got, total/memoryShare, total)
	}

	t.Setenv("GOGC", "200")
	t.Setenv("GOMEMLIMIT", "1GiB")
	RuntimeDefaults(log)()
	if got := debug.SetGCPercent(100); got != 100 {
		t.Fatalf("GOGC set in the environment was overridden: %d", got)
	}
	if got := debug.SetMemoryLimit(math.MaxInt64); got != math.MaxInt64 {
		t.Fatalf("GOMEMLIMIT set in the environment was overridden: %d", got)
	}
}
