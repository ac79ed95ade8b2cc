package config

import (
	"fmt"
	"reflect"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

var durationType = reflect.TypeOf(time.Duration(0))

// checkNode walks a YAML node alongside the Go type it decodes into. It
// reports unknown keys with their line, and rewrites a bare integer given to
// a duration field as that many seconds: Kamailio's modparams of the same
// names (min_expires, default_expires, update_period, ...) are seconds, so
// `default_expires: 3600` means what an operator expects, as does "1h".
// It records the line of every key path written in lines.
func checkNode(n *yaml.Node, t reflect.Type, path string, lines map[string]int) Errors {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch n.Kind {
	case yaml.DocumentNode:
		var errs Errors
		for _, c := range n.Content {
			errs = append(errs, checkNode(c, t, path, lines)...)
		}
		return errs
	case yaml.ScalarNode:
		if t == durationType && n.Tag == "!!int" {
			n.Value += "s"
			n.Tag = "!!str"
		}
		return nil
	case yaml.SequenceNode:
		if t.Kind() != reflect.Slice && t.Kind() != reflect.Array {
			return nil // the decoder reports the type error with its line
		}
		var errs Errors
		for i, c := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			lines[p] = c.Line
			errs = append(errs, checkNode(c, t.Elem(), p, lines)...)
		}
		return errs
	case yaml.MappingNode:
		switch t.Kind() {
		case reflect.Map:
			var errs Errors
			for i := 0; i+1 < len(n.Content); i += 2 {
				p := join(path, n.Content[i].Value)
				lines[p] = n.Content[i].Line
				errs = append(errs, checkNode(n.Content[i+1], t.Elem(), p, lines)...)
			}
			return errs
		case reflect.Struct:
			fields := yamlFields(t)
			var errs Errors
			for i := 0; i+1 < len(n.Content); i += 2 {
				k := n.Content[i]
				ft, ok := fields[k.Value]
				if !ok {
					errs = append(errs, Problem{Line: k.Line, Msg: fmt.Sprintf("unknown key %q in %s", k.Value, section(path))})
					continue
				}
				p := join(path, k.Value)
				lines[p] = k.Line
				errs = append(errs, checkNode(n.Content[i+1], ft, p, lines)...)
			}
			return errs
		}
	}
	return nil
}

// yamlFields maps the YAML keys of a struct type to their field types,
// following inline fields.
func yamlFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("yaml")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" {
			continue
		}
		if strings.Contains(opts, "inline") {
			for k, v := range yamlFields(f.Type) {
				out[k] = v
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		out[name] = f.Type
	}
	return out
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func section(path string) string {
	if path == "" {
		return "the top level"
	}
	return path
}
