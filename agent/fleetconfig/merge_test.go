package fleetconfig

import (
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

func TestMergeOrderAndNamedLists(t *testing.T) {
	local := "site: s1\nlog_level: info\nbuffer: {max_bytes: 1GiB, sync: always}\nsensors:\n  - {name: room, driver: sim, interval: 1s}\n  - {name: door, driver: gpio, line: 4}\n"
	frags := []Fragment{
		{Key: "fleet", Rev: 1, Data: "log_level: warn\nbuffer: {max_bytes: 2GiB}\n"},
		{Key: "group.north", Rev: 2, Data: "log_level: debug\nsensors:\n  - {name: room, interval: 5s}\n  - {name: fan, driver: sim}\n"},
		{Key: "site.s1", Rev: 3, Data: "buffer: {max_bytes: 3GiB}\n"},
	}
	out, err := Merge([]byte(local), frags)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		LogLevel string            `yaml:"log_level"`
		Buffer   map[string]string `yaml:"buffer"`
		Sensors  []map[string]any  `yaml:"sensors"`
	}
	if err := yaml.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	if got.LogLevel != "debug" || got.Buffer["max_bytes"] != "3GiB" || got.Buffer["sync"] != "always" {
		t.Fatalf("merge order: %s", out)
	}
	names := []string{}
	for _, s := range got.Sensors {
		names = append(names, s["name"].(string))
	}
	if strings.Join(names, ",") != "room,door,fan" || got.Sensors[0]["interval"] != "5s" || got.Sensors[0]["driver"] != "sim" || got.Sensors[1]["line"] != 4 {
		t.Fatalf("sensors merged by name: %+v", got.Sensors)
	}
}

func TestDesiredRolloutReplacesGroup(t *testing.T) {
	have := map[string]Fragment{
		"fleet":            {Key: "fleet", Rev: 1, Data: "a: 1"},
		"group.north":      {Key: "group.north", Rev: 4, Data: "b: 1"},
		"rollout.north.s1": {Key: "rollout.north.s1", Rev: 6, Data: "b: 2"},
		"group.pilot":      {Key: "group.pilot", Rev: 5, Deleted: true},
		"site.s1":          {Key: "site.s1", Rev: 3, Data: "c: 1"},
		"rollout.north.s2": {Key: "rollout.north.s2", Rev: 9, Data: "ignored: other site"},
	}
	s := Desired("s1", []string{"north", "pilot"}, have)
	if got := s.Describe(); got != "fleet@1 rollout.north.s1@6 site.s1@3" || s.Rev != 6 {
		t.Fatalf("desired %s rev %d", got, s.Rev)
	}
}

func TestCheckAllowed(t *testing.T) {
	for _, tc := range []struct {
		data  string
		allow []string
		want  string
	}{
		{"sensors: []\nlog_level: debug\nbuffer: {max_age: 1h}\nuplink: {bandwidth: 10KiB}\n", DefaultAllow, ""},
		{"buffer: {sync: always}\n", DefaultAllow, "buffer.sync: not in the site's remote_config.allow"},
		{"uplink: {hub_urls: [nats://x:1]}\n", DefaultAllow, "uplink.hub_urls: not in"},
		{"uplink: {hub_urls: [nats://x:1]}\n", append([]string{"uplink.hub_urls"}, DefaultAllow...), ""},
		{"remote_config: {enabled: false}\n", []string{"remote_config"}, "remote_config.enabled: the hub may never set this key"},
		{"groups: [a]\n", DefaultAllow, "groups: the hub may never set"},
	} {
		err := CheckAllowed(Fragment{Key: "site.s1", Rev: 2, Data: tc.data}, tc.allow)
		if (err == nil) != (tc.want == "") || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%q allow %v: %v, want %q", tc.data, tc.allow, err, tc.want)
		}
	}
	if err := (Options{Allow: []string{"remote_config.allow"}, HubDomain: "hub", Gate: 60e9}).Validate(nil); err == nil || !strings.Contains(err.Error(), "cannot be allowed") {
		t.Fatalf("allowing remote_config: %v", err)
	}
}
