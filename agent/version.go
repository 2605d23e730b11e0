package agent

import (
	"fmt"
	"runtime"

	"github.com/nats-io/nats-server/v2/server"
)

// Version and Commit are stamped at build time with -ldflags -X.
var (
	Version = "0.0.0-dev"
	Commit  = "unknown"
)

// VersionString is what `edge-agent version` prints.
func VersionString() string {
	return fmt.Sprintf("edge-agent %s (commit %s)\n  go:          %s\n  nats-server: %s\n  platform:    %s/%s%s\n",
		Version, Commit, runtime.Version(), server.VERSION, runtime.GOOS, runtime.GOARCH, goarm())
}
