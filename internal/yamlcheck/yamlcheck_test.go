package yamlcheck

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

type inner struct {
	Every time.Duration `yaml:"every"`
}

type custom struct {
	Name string `yaml:"name"`
}

// UnmarshalYAML takes keys aside as sensors.Config does, and refuses a
// scalar with its own message.
func (c *custom) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.MappingNode {
		return errors.New("a custom entry is a mapping")
	}
	return nil
}

type doc struct {
	Site  string            `yaml:"site"`
	Count int               `yaml:"count"`
	In    inner             `yaml:"in"`
	List  []inner           `yaml:"list"`
	Map   map[string]inner  `yaml:"map"`
	Items []custom          `yaml:"items"`
	Ptr   *inner            `yaml:"ptr"`
	Any   map[string]string `yaml:"any"`
}

func TestFind(t *testing.T) {
	cases := []struct {
		name, yaml string
		key        string
		line       int
		want       string
	}{
		{"fine", "site: s\ncount: 2\nin: {every: 1s}\nitems: [{name: a, driver_key: x}]\nptr:\n", "", 0, ""},
		{"unknown top key", "site: s\nsitte: x\n", "sitte", 2, `unknown key "sitte"`},
		{"unknown nested key", "in:\n  evry: 1s\n", "in.evry", 2, "unknown key"},
		{"wrong type", "count: many\n", "count", 1, `wrong type: cannot use !!str "many" as int`},
		{"block for a scalar", "site:\n  a: b\n", "site", 2, "cannot use a mapping as string"},
		{"duration without unit", "in: {every: 30}\n", "in.every", 1, `"30" needs a unit, e.g. 30s`},
		{"duration overflows", "list:\n  - every: 9999999999h\n", "list[0].every", 2, "too large"},
		{"not a duration", "map:\n  a: {every: soon}\n", "map.a.every", 2, "not a duration"},
		{"pointer", "ptr: {every: x}\n", "ptr.every", 1, "not a duration"},
		{"own decoder's error", "items:\n  - 5\n", "items[0]", 2, "a custom entry is a mapping"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var root yaml.Node
			if err := yaml.Unmarshal([]byte(tc.yaml), &root); err != nil {
				t.Fatal(err)
			}
			p := Find(&root, reflect.TypeOf(doc{}), "")
			if tc.want == "" {
				if p != nil {
					t.Fatalf("want no problem, got %+v", p)
				}
				return
			}
			if p == nil {
				t.Fatalf("want %q at %s, got none", tc.want, tc.key)
			}
			if p.Key != tc.key || p.Line != tc.line || !strings.Contains(p.Msg, tc.want) {
				t.Errorf("got %+v, want key %q line %d and %q", p, tc.key, tc.line, tc.want)
			}
		})
	}
}

// TestFindPrefix: a caller that decodes a subtree (a sensor's driver
// options) gets paths under its own key.
func TestFindPrefix(t *testing.T) {
	var root yaml.Node
	if err := yaml.Unmarshal([]byte("every: later\n"), &root); err != nil {
		t.Fatal(err)
	}
	if p := Find(&root, reflect.TypeOf(inner{}), "sensors[2]"); p == nil || p.Key != "sensors[2].every" {
		t.Fatalf("got %+v, want key sensors[2].every", p)
	}
}
