package agent

import (
	"bufio"
	"log/slog"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// Runtime defaults for a daemon that shares a small device with the
// store's own applications. Go's defaults let the heap grow to twice what
// is live before collecting, and know no limit: on a gateway with 1 GiB a
// drain or a burst could take memory the other applications need.
const (
	defaultGOGC = 50
	// memoryShare is the fraction of the machine's (or the cgroup's)
	// memory the runtime aims to stay under: a soft limit, which makes
	// the collector work harder near it and never fails an allocation.
	memoryShare = 4
)

// RuntimeDefaults sets a soft memory limit now, and returns steady, which
// sets GOGC: the caller runs it once the agent is ready. The start
// allocates a few megabytes in a few milliseconds, and at GOGC 50 the
// collector's cycles there sit on the path to READY on a two-core device;
// the memory limit bounds the start meanwhile. The operator's GOGC or
// GOMEMLIMIT in the environment always wins (systemd's Environment= in a
// drop-in).
func RuntimeDefaults(log *slog.Logger) (steady func()) {
	steady = func() {}
	if os.Getenv("GOGC") == "" {
		steady = func() { debug.SetGCPercent(defaultGOGC) }
	}
	if os.Getenv("GOMEMLIMIT") != "" {
		return steady
	}
	if total := machineMemory(); total > 0 {
		debug.SetMemoryLimit(total / memoryShare)
		log.Debug("runtime: soft memory limit set", "limit_bytes", total/memoryShare)
	}
	return steady
}

// machineMemory is the memory this process may use: the cgroup's limit
// when one is set (a container, a systemd MemoryMax=), else the machine's
// total; 0 when neither can be read.
func machineMemory() int64 {
	// cgroup v2: /proc/self/cgroup is "0::/system.slice/edge-agent.service".
	if b, err := os.ReadFile("/proc/self/cgroup"); err == nil {
		if p, ok := strings.CutPrefix(strings.TrimSpace(string(b)), "0::"); ok {
			if m, err := os.ReadFile("/sys/fs/cgroup" + p + "/memory.max"); err == nil {
				if n, err := strconv.ParseInt(strings.TrimSpace(string(m)), 10, 64); err == nil && n > 0 {
					return n // "max" (no limit) does not parse
				}
			}
		}
	}
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "MemTotal:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				return 0
			}
			return kb << 10
		}
	}
	return 0
}
