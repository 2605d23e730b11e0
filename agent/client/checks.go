package client

import (
	"fmt"
	"io"
	"strings"

	"github.com/edge-agent/edge-agent/agent"
)

// RenderChecks prints one line per check and the fix under each problem.
func RenderChecks(w io.Writer, checks []agent.Check, tty bool) {
	st := style{tty}
	for _, c := range checks {
		mark := strings.ToUpper(string(c.Verdict))
		switch {
		case c.Verdict == agent.CheckFail:
			mark = st.mark(agent.SevCritical)
		case c.Verdict == agent.CheckWarn:
			mark = st.mark(agent.SevWarning)
		case c.Verdict == agent.CheckOK:
			mark = st.mark("")
		}
		fmt.Fprintf(w, "%-4s %-10s %s\n", mark, c.Name, c.Detail)
		if c.Fix != "" && c.Verdict != agent.CheckOK {
			fmt.Fprintf(w, "     %-10s fix: %s\n", "", c.Fix)
		}
	}
}
