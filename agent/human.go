package agent

import "github.com/edge-agent/edge-agent/internal/human"

// The daemon's warnings word times and sizes as the client's screens do.
var (
	fmtAge    = human.Age
	fmtBytes  = human.Bytes
	fmtOffset = human.Offset
)
