package inventory

import (
	"encoding"
	"reflect"
	"sort"
	"strings"

	"github.com/vzfleet/vzfleet/inventory/v1alpha1"
)

// mergeSpec deep-merges a host's settings over the defaults and records, for
// every value set, the file path it came from:
//   - nested settings (ssh, node, jumpHost, ...) merge field by field;
//   - maps (labels) merge key by key, the host's keys winning;
//   - scalars, lists and fields tagged merge:"replace" come whole from the
//     host when it sets them, else from the defaults;
//   - fields tagged merge:"group=x" come all from the host when it sets any
//     of them, else all from the defaults (e.g. guest SSH key and password).
//
// Neither input is modified; the result shares no maps with them.
func mergeSpec(host *v1alpha1.HostSpec, hostPrefix string, def *v1alpha1.HostSpec, defPrefix string) (v1alpha1.HostSpec, map[string]string) {
	var out v1alpha1.HostSpec
	origins := make(map[string]string)
	m := merger{origins: origins, hostPrefix: hostPrefix, defPrefix: defPrefix}
	m.mergeStruct(reflect.ValueOf(&out).Elem(), valueOf(host), valueOf(def), "")
	return out, origins
}

func valueOf(s *v1alpha1.HostSpec) reflect.Value {
	if s == nil {
		return reflect.Value{}
	}
	return reflect.ValueOf(s).Elem()
}

type merger struct {
	origins               map[string]string
	hostPrefix, defPrefix string
}

var textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()

// mergeStruct merges struct values h over d into out. An invalid h or d
// stands for an absent struct.
func (m merger) mergeStruct(out, h, d reflect.Value, rel string) {
	t := out.Type()
	// For each merge group: does the host set any of its fields?
	hostSetsGroup := make(map[string]bool)
	for i := range t.NumField() {
		if g, ok := strings.CutPrefix(t.Field(i).Tag.Get("merge"), "group="); ok && h.IsValid() && !unset(h.Field(i)) {
			hostSetsGroup[g] = true
		}
	}
	for i := range t.NumField() {
		sf := t.Field(i)
		name, _, _ := strings.Cut(sf.Tag.Get("yaml"), ",")
		sub := joinPath(rel, name)
		hv, dv := field(h, i), field(d, i)
		tag := sf.Tag.Get("merge")
		switch {
		case strings.HasPrefix(tag, "group="):
			if hostSetsGroup[strings.TrimPrefix(tag, "group=")] {
				m.take(out.Field(i), hv, m.hostPrefix, sub)
			} else {
				m.take(out.Field(i), dv, m.defPrefix, sub)
			}
		case tag == "replace" || !deepMerged(sf.Type):
			if !unset(hv) {
				m.take(out.Field(i), hv, m.hostPrefix, sub)
			} else {
				m.take(out.Field(i), dv, m.defPrefix, sub)
			}
		case sf.Type.Kind() == reflect.Map:
			m.mergeMap(out.Field(i), hv, dv, sub)
		default: // pointer to a struct of settings
			if unset(hv) && unset(dv) {
				continue
			}
			p := reflect.New(sf.Type.Elem())
			m.mergeStruct(p.Elem(), elem(hv), elem(dv), sub)
			out.Field(i).Set(p)
			m.origins[sub] = joinPath(m.hostPrefix, sub)
			if unset(hv) {
				m.origins[sub] = joinPath(m.defPrefix, sub)
			}
		}
	}
}

// deepMerged reports whether a field's value merges below itself: maps and
// pointers to settings structs do; scalars, lists and struct-shaped scalars
// (durations, quantities) do not.
func deepMerged(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Map:
		return true
	case reflect.Pointer:
		return t.Elem().Kind() == reflect.Struct && !t.Implements(textUnmarshalerType)
	default:
		return false
	}
}

func (m merger) take(out, v reflect.Value, prefix, sub string) {
	if unset(v) {
		return
	}
	out.Set(v)
	m.origins[sub] = joinPath(prefix, sub)
}

func (m merger) mergeMap(out, h, d reflect.Value, sub string) {
	if unset(h) && unset(d) {
		return
	}
	res := reflect.MakeMap(out.Type())
	for _, src := range []struct {
		v      reflect.Value
		prefix string
	}{{d, m.defPrefix}, {h, m.hostPrefix}} {
		if unset(src.v) {
			continue
		}
		m.origins[sub] = joinPath(src.prefix, sub)
		keys := src.v.MapKeys()
		sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
		for _, k := range keys {
			res.SetMapIndex(k, src.v.MapIndex(k))
			key := sub + "[" + k.String() + "]"
			m.origins[key] = joinPath(src.prefix, key)
		}
	}
	out.Set(res)
}

func field(v reflect.Value, i int) reflect.Value {
	if !v.IsValid() {
		return reflect.Value{}
	}
	return v.Field(i)
}

func elem(v reflect.Value) reflect.Value {
	if !v.IsValid() || v.IsNil() {
		return reflect.Value{}
	}
	return v.Elem()
}

func unset(v reflect.Value) bool {
	if !v.IsValid() {
		return true
	}
	switch v.Kind() {
	case reflect.Pointer, reflect.Map, reflect.Slice:
		return v.IsNil()
	default:
		return v.IsZero()
	}
}
