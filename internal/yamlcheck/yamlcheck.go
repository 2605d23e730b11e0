// Package yamlcheck finds the key and line of a YAML config problem by
// walking the document's nodes alongside the Go type they decode into.
// yaml's own errors name a line in free text only; the node tree names the
// key and its line exactly, so config errors never parse error text.
package yamlcheck

import (
	"fmt"
	"reflect"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/edge-agent/edge-agent/internal/confkit"
)

// Problem is the first key in a document that does not decode.
type Problem struct {
	Key  string // dotted path, e.g. "buffer.max_age" or "sensors[0].interval"
	Line int
	Msg  string
}

var unmarshaler = reflect.TypeOf((*yaml.Unmarshaler)(nil)).Elem()

// Find returns the first key under n (a document or a mapping) whose value
// cannot decode into its field of t, or that t does not have, in document
// order; nil if every key decodes. prefix is prepended to the key path.
// Keys a type's own UnmarshalYAML takes aside (sensor driver options) are
// left to that type's validation.
func Find(n *yaml.Node, t reflect.Type, prefix string) *Problem {
	return walk(n, t, prefix)
}

func walk(n *yaml.Node, t reflect.Type, path string) *Problem {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return nil
		}
		return walk(n.Content[0], t, path)
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.ShortTag() == "!!null" {
		return nil
	}
	custom := reflect.PointerTo(t).Implements(unmarshaler)
	switch {
	case t == reflect.TypeOf(time.Duration(0)) && n.Kind == yaml.ScalarNode:
		var d time.Duration
		if n.Decode(&d) != nil {
			return &Problem{Key: path, Line: n.Line, Msg: durationMsg(n.Value)}
		}
		return nil
	case t.Kind() == reflect.Struct && n.Kind == yaml.MappingNode:
		fields := fieldTypes(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := join(path, k.Value)
			ft, ok := fields[k.Value]
			if !ok {
				if custom {
					continue
				}
				return &Problem{Key: p, Line: k.Line, Msg: fmt.Sprintf("unknown key %q (check spelling; `edge-agent check-config` lists the effective keys)", k.Value)}
			}
			if pr := walk(v, ft, p); pr != nil {
				return pr
			}
		}
	case (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) && n.Kind == yaml.SequenceNode && !custom:
		for i, c := range n.Content {
			if pr := walk(c, t.Elem(), fmt.Sprintf("%s[%d]", path, i)); pr != nil {
				return pr
			}
		}
		return nil
	case t.Kind() == reflect.Map && n.Kind == yaml.MappingNode && !custom:
		for i := 0; i+1 < len(n.Content); i += 2 {
			if pr := walk(n.Content[i+1], t.Elem(), join(path, n.Content[i].Value)); pr != nil {
				return pr
			}
		}
		return nil
	}
	// A leaf, a value of the wrong kind, or a type with its own decoder:
	// decode it alone.
	err := n.Decode(reflect.New(t).Interface())
	if err == nil {
		return nil
	}
	if _, ok := err.(*yaml.TypeError); ok {
		return &Problem{Key: path, Line: n.Line, Msg: fmt.Sprintf("wrong type: cannot use %s as %s", written(n), t)}
	}
	return &Problem{Key: path, Line: n.Line, Msg: err.Error()}
}

// durationMsg says why s is not a time.Duration: unitless (yaml reads a
// bare number as an int, which it refuses as a duration), too large, or not
// a duration at all.
func durationMsg(s string) string {
	_, err := time.ParseDuration(s)
	_, withUnit := time.ParseDuration(s + "s")
	switch {
	case err == nil || withUnit == nil:
		return fmt.Sprintf("%q needs a unit, e.g. %ss", s, s)
	case confkit.DurationOverflows(s):
		return fmt.Sprintf("%q is too large for a duration (at most about 292 years)", s)
	}
	return fmt.Sprintf("%q is not a duration such as 30s, 5m or 1h30m", s)
}

// fieldTypes maps the YAML keys of a struct to their types, including those
// of inlined structs.
func fieldTypes(t reflect.Type) map[string]reflect.Type {
	m := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag, flags, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if strings.Contains(flags, "inline") && f.Type.Kind() == reflect.Struct {
			for k, ft := range fieldTypes(f.Type) {
				m[k] = ft
			}
			continue
		}
		switch tag {
		case "-":
		case "":
			m[strings.ToLower(f.Name)] = f.Type
		default:
			m[tag] = f.Type
		}
	}
	return m
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// written is the value as an operator wrote it, or its kind for a block.
func written(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	return fmt.Sprintf("%s %q", n.ShortTag(), n.Value)
}
