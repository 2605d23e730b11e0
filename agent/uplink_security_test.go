package agent

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/edge-agent/edge-agent/internal/testkit"
)

// By default a hub client can read the site's JetStream through the leaf
// but not delete, purge or edit its buffer; allow_remote_admin opens it.
func TestUplinkRemoteAdmin(t *testing.T) {
	for _, allow := range []bool{false, true} {
		t.Run(fmt.Sprintf("allow_remote_admin=%v", allow), func(t *testing.T) {
			hub := testkit.RunServer(t, testkit.HubOpts(t))
			a := startAgent(t, fmt.Sprintf("site: store-9\nuplink:\n  hub_urls: [%s]\n  allow_remote_admin: %v\n", leafURL(t, hub, "nats"), allow))
			leafUp(t, hub, a)
			hc := connect(t, hub.ClientURL())
			api := "$JS.store-9.API."
			interest(t, hub, api+"INFO")
			if _, err := hc.Request(api+"INFO", nil, 5*time.Second); err != nil {
				t.Fatalf("INFO from the hub: %v", err)
			}
			r, err := hc.Request(api+"STREAM.INFO.TELEMETRY", nil, 5*time.Second)
			if err != nil {
				t.Fatalf("STREAM.INFO from the hub: %v", err)
			}
			for _, op := range []string{"STREAM.PURGE.TELEMETRY", "STREAM.DELETE.TELEMETRY"} {
				r, err = hc.Request(api+op, nil, 2*time.Second)
				var resp struct {
					Success bool `json:"success"`
				}
				if err == nil {
					_ = json.Unmarshal(r.Data, &resp)
				}
				if resp.Success != allow {
					t.Fatalf("%s from the hub: success=%v (err %v), want %v", op, resp.Success, err, allow)
				}
			}
			_, err = a.js.Stream(t.Context(), "TELEMETRY")
			if survived := err == nil; survived == allow {
				t.Fatalf("TELEMETRY survived=%v with allow_remote_admin=%v", survived, allow)
			}
		})
	}
}
