package fleetconfig

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Merge lays the fragments over the local file in order: mappings merge key
// by key, lists of mappings that all carry a name (sensors) merge element by
// name (a fragment changes or adds a sensor, never drops the others), other
// lists and scalars are replaced. The result is YAML for the strict
// validator; the local file's comments do not survive, which is why it is
// only ever written to the state directory, never over the local file.
func Merge(local []byte, frags []Fragment) ([]byte, error) {
	base, err := decodeMap("local file", local)
	if err != nil {
		return nil, err
	}
	for _, f := range frags {
		m, err := decodeMap("fragment "+f.String(), []byte(f.Data))
		if err != nil {
			return nil, err
		}
		base = mergeMaps(base, m)
	}
	return yaml.Marshal(base)
}

func decodeMap(what string, data []byte) (map[string]any, error) {
	var m map[string]any
	if err := yaml.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("%s: not valid YAML: %s", what, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	if m == nil {
		m = map[string]any{}
	}
	return m, nil
}

func mergeMaps(dst, src map[string]any) map[string]any {
	for k, v := range src {
		dst[k] = mergeValue(dst[k], v)
	}
	return dst
}

func mergeValue(dst, src any) any {
	switch s := src.(type) {
	case map[string]any:
		if d, ok := dst.(map[string]any); ok {
			return mergeMaps(d, s)
		}
	case []any:
		if d, ok := dst.([]any); ok && named(d) && named(s) {
			return mergeNamed(d, s)
		}
	}
	return src
}

func named(l []any) bool {
	for _, e := range l {
		m, ok := e.(map[string]any)
		if !ok {
			return false
		}
		if _, ok := m["name"].(string); !ok {
			return false
		}
	}
	return true
}

func mergeNamed(dst, src []any) []any {
	out := slices.Clone(dst)
	for _, e := range src {
		m := e.(map[string]any)
		i := slices.IndexFunc(out, func(x any) bool { return x.(map[string]any)["name"] == m["name"] })
		if i < 0 {
			out = append(out, m)
			continue
		}
		out[i] = mergeMaps(out[i].(map[string]any), m)
	}
	return out
}

// Paths lists the key paths a fragment sets, down to the leaves, with list
// elements under their name where they have one: "sensors[door]",
// "uplink.hub_urls". The allow list and error attribution use them.
func Paths(data []byte) ([]string, error) {
	m, err := decodeMap("fragment", data)
	if err != nil {
		return nil, err
	}
	var out []string
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		mm, ok := v.(map[string]any)
		if !ok || len(mm) == 0 {
			out = append(out, prefix)
			return
		}
		for k, c := range mm {
			p := k
			if prefix != "" {
				p = prefix + "." + k
			}
			walk(p, c)
		}
	}
	walk("", m)
	sort.Strings(out)
	return out, nil
}
