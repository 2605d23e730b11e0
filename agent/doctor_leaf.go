package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/edge-agent/edge-agent/uplink"
)

const hubInitFix = "create the hub stream with `edge-agent hub init --server URL` (docs/UPLINK.md: Hub side)"

// leafSteps checks, on doctor's test leaf the hub has just accepted, that
// the hub-side leaf user may publish the site's telemetry and that a hub
// stream captures it. Nothing is stored: the probe publish names a stream
// that cannot exist (Nats-Expected-Stream), so a hub stream refuses it and
// its answer proves both. Without the hub's interest the leaf never sends
// the publish, so the hub's JetStream API is asked which stream captures
// the subject; a line is shown only for what the hub said.
func (d *Doctor) leafSteps(ctx context.Context, cfg *Config, label string, leaf *server.Server) []Check {
	prefix, site := cfg.Uplink.SubjectPrefix, cfg.Site
	wild := prefix + "." + site + ".telemetry.>"
	probe := prefix + "." + site + ".telemetry.doctor"
	perms := func(v Verdict, detail, fix string) Check {
		return Check{Name: "leaf perms", Verdict: v, Detail: label + ": " + detail, Fix: fix}
	}
	stream := func(v Verdict, detail, fix string) Check {
		return Check{Name: "hub stream", Verdict: v, Detail: label + ": " + detail, Fix: fix}
	}
	nc, err := nats.Connect("", nats.InProcessServer(leaf), nats.Name("edge-agent-doctor"))
	if err != nil {
		return []Check{perms(CheckSkip, "not checked: cannot use the test leaf: "+err.Error(), "")}
	}
	defer nc.Close()

	// The hub sends its subscriptions right after accepting the leaf.
	deadline := time.Now().Add(d.StepTimeout)
	for !uplink.HubInterest(leaf, probe) && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(50 * time.Millisecond)
	}
	if uplink.HubInterest(leaf, probe) {
		m := nats.NewMsg(probe)
		m.Header.Set("Nats-Expected-Stream", "edge-agent-doctor-probe")
		rctx, cancel := context.WithTimeout(ctx, d.StepTimeout)
		defer cancel()
		resp, err := nc.RequestMsgWithContext(rctx, m)
		if err != nil {
			return []Check{perms(CheckFail, fmt.Sprintf("the hub takes %s but a publish to %s from this site got no answer (%v): the hub-side leaf user may not publish there, or may not receive the answer on _INBOX.>", wild, probe, err), uplink.NoPublishFix(prefix, site))}
		}
		var ack struct {
			Stream string `json:"stream"`
		}
		_ = json.Unmarshal(resp.Data, &ack)
		ok := perms(CheckOK, "this site's leaf user may publish "+wild, "")
		if ack.Stream == "" {
			// Something answered that is not a stream: a service, not JetStream.
			return []Check{ok, stream(CheckFail, fmt.Sprintf("%s is answered by something that is not a hub stream (%d bytes, no stream named)", probe, len(resp.Data)), hubInitFix)}
		}
		return []Check{ok, stream(CheckOK, fmt.Sprintf("hub stream %s captures %s", ack.Stream, wild), "")}
	}
	names, err := hubStreamNames(ctx, nc, leaf, prefix+"."+site+".telemetry.x", d.StepTimeout)
	switch {
	case err != nil:
		return []Check{perms(CheckFail, fmt.Sprintf("the hub does not take %s from this site, and its JetStream API did not answer (%v): the hub-side leaf user may not publish there, or no hub stream captures it", wild, err),
			uplink.NoPublishFix(prefix, site)+"; if it may, "+hubInitFix)}
	case len(names) == 0:
		return []Check{
			perms(CheckSkip, "not provable until a hub stream captures "+wild, ""),
			stream(CheckFail, uplink.NoHubStreamReason(wild), hubInitFix),
		}
	}
	return []Check{
		perms(CheckFail, fmt.Sprintf("hub stream %s captures %s but the hub does not take it from this site: its leaf user may not publish there", strings.Join(names, ", "), wild), uplink.NoPublishFix(prefix, site)),
		stream(CheckOK, fmt.Sprintf("hub stream %s captures %s", strings.Join(names, ", "), wild), ""),
	}
}

// hubStreamNames asks the hub's JetStream API, through the leaf, which
// streams capture subject; the API's domain is the one the hub announced
// to the leaf ($JS.<domain>.API...). An error means the hub did not answer.
func hubStreamNames(ctx context.Context, nc *nats.Conn, leaf *server.Server, subject string, timeout time.Duration) ([]string, error) {
	api := ""
	for _, sub := range uplink.HubSubs(leaf) {
		// The domain's own API: a hub with a domain keeps its $JS.API from
		// leaves.
		if d, ok := strings.CutPrefix(sub, "$JS."); ok && !strings.HasPrefix(d, "API.") {
			if d, _, ok := strings.Cut(d, ".API."); ok && !strings.ContainsAny(d, ".*>") {
				api = "$JS." + d + ".API"
				break
			}
		}
		if sub == "$JS.API.>" {
			api = "$JS.API"
		}
	}
	if api == "" {
		return nil, errors.New("the hub offers this site no JetStream API")
	}
	req, _ := json.Marshal(map[string]string{"subject": subject})
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	resp, err := nc.RequestWithContext(rctx, api+".STREAM.NAMES", req)
	if err != nil {
		return nil, err
	}
	var r struct {
		Streams []string `json:"streams"`
		Error   *struct {
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(resp.Data, &r); err != nil {
		return nil, fmt.Errorf("%s.STREAM.NAMES: %w", api, err)
	}
	if r.Error != nil {
		return nil, fmt.Errorf("%s.STREAM.NAMES: %s", api, r.Error.Description)
	}
	return r.Streams, nil
}
