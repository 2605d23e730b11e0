package agent

import "runtime/debug"

// goarm reports the GOARM level baked into the binary: on 32-bit ARM the
// difference between v5 and v6 decides which devices it runs on.
func goarm() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	for _, s := range bi.Settings {
		if s.Key == "GOARM" && s.Value != "" {
			return " (GOARM=" + s.Value + ")"
		}
	}
	return ""
}
