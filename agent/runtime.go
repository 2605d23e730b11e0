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

// RuntimeDefaults sets GOGC and a soft memory limit unless the operator
// set GOGC or GOMEMLIMIT in the environment, which always win (systemd's
// Environment= in a drop-in).
func RuntimeDefaults(log *slog.Logger) {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(defaultGOGC)
	}
	if os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	if total := machineMemory(); total > 0 {
		debug.SetMemoryLimit(total / memoryShare)
		log.Debug("runtime: soft memory limit set", "limit_bytes", total/memoryShare)
	}
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
