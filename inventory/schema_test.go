package inventory

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
	"k8s.io/kube-openapi/pkg/validation/spec"
	"k8s.io/kube-openapi/pkg/validation/strfmt"
	"k8s.io/kube-openapi/pkg/validation/validate"

	"github.com/vzfleet/vzfleet/inventory/v1alpha1"
)

func TestJSONSchemaGolden(t *testing.T) {
	b, err := generateSchema()
	if err != nil {
		t.Fatal(err)
	}
	if !json.Valid(b) {
		t.Fatal("schema is not valid JSON")
	}
	golden(t, "testdata/schema.golden.json", b)
}

// TestExampleKeysInSchema walks examples/inventory.yaml and the schema side
// by side: every key written in the example must be a described property.
func TestExampleKeysInSchema(t *testing.T) {
	var schema map[string]any
	if err := json.Unmarshal(JSONSchema(), &schema); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile("../examples/inventory.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	defs := schema["definitions"].(map[string]any)
	w := schemaWalker{t: t, defs: defs, seen: map[string]bool{}}
	w.walk(doc.Content[0], schema, "", "Inventory")

	// And the other way round: the example shows every field there is.
	// A host's own settings count as shown when defaults shows them.
	for _, owner := range append(slices.Sorted(maps.Keys(defs)), "Inventory") {
		def := schema
		if owner != "Inventory" {
			def = defs[owner].(map[string]any)
		}
		for prop := range def["properties"].(map[string]any) {
			if !w.seen[owner+"."+prop] && !(owner == "Host" && w.seen["HostSpec."+prop]) {
				t.Errorf("examples/inventory.yaml does not show %s.%s", owner, prop)
			}
		}
	}
}

type schemaWalker struct {
	t    *testing.T
	defs map[string]any
	seen map[string]bool // Definition.property written in the example
}

// resolve follows $ref and single-element allOf wrappers, returning the
// definition reached (or owner when there is no $ref).
func (w *schemaWalker) resolve(s map[string]any, owner string) (map[string]any, string) {
	for {
		if ref, ok := s["$ref"].(string); ok {
			owner = strings.TrimPrefix(ref, "#/definitions/")
			s = w.defs[owner].(map[string]any)
			continue
		}
		if all, ok := s["allOf"].([]any); ok && len(all) == 1 {
			s = all[0].(map[string]any)
			continue
		}
		return s, owner
	}
}

func (w *schemaWalker) walk(n *yaml.Node, s map[string]any, path, owner string) {
	s, owner = w.resolve(s, owner)
	switch n.Kind {
	case yaml.MappingNode:
		props, hasProps := s["properties"].(map[string]any)
		for i := 0; i+1 < len(n.Content); i += 2 {
			key, val := n.Content[i].Value, n.Content[i+1]
			if !hasProps {
				continue // a free-form map such as labels
			}
			p, ok := props[key].(map[string]any)
			if !ok {
				w.t.Errorf("%s%s (line %d): not in the schema", path, key, n.Content[i].Line)
				continue
			}
			w.seen[owner+"."+key] = true
			if d, _ := p["description"].(string); len(d) < 10 {
				w.t.Errorf("%s%s: no description in the schema", path, key)
			}
			w.walk(val, p, path+key+".", owner)
		}
	case yaml.SequenceNode:
		items, ok := s["items"].(map[string]any)
		if !ok {
			w.t.Errorf("%s: a list in the example, not in the schema", path)
			return
		}
		for _, item := range n.Content {
			w.walk(item, items, path+"[]", owner)
		}
	}
}

// TestSchemaDefaultsMatchSetDefaults: the default keywords editors show are
// the values SetDefaultsHost and SetDefaultsRollout really apply.
func TestSchemaDefaultsMatchSetDefaults(t *testing.T) {
	spec := v1alpha1.HostSpec{SSH: &v1alpha1.SSH{JumpHost: &v1alpha1.JumpHost{}}}
	v1alpha1.SetDefaultsHost("h", &spec)
	var r v1alpha1.Rollout
	v1alpha1.SetDefaultsRollout(&r)
	checked := 0
	var check func(v reflect.Value)
	check = func(v reflect.Value) {
		for i := range v.NumField() {
			sf, fv := v.Type().Field(i), v.Field(i)
			if fv.Kind() == reflect.Pointer && !fv.IsNil() && fv.Elem().Kind() == reflect.Struct && !fv.Type().Implements(textUnmarshalerType) {
				check(fv.Elem())
				continue
			}
			want, ok := sf.Tag.Lookup("default")
			if !ok || strings.Contains(want, "<") {
				continue
			}
			if fv.Kind() != reflect.Pointer || fv.IsNil() {
				t.Errorf("%s: schema default %q but SetDefaults leaves it unset", sf.Name, want)
				continue
			}
			var got string
			switch x := fv.Interface().(type) {
			case *v1alpha1.Duration:
				got = x.Duration.String()
				want = mustDuration(t, want)
			case *v1alpha1.Quantity:
				got = x.String()
			case *v1alpha1.IntOrPercent:
				got = fmt.Sprint(x.Value)
			default:
				got = fmt.Sprint(fv.Elem().Interface())
			}
			if got != want {
				t.Errorf("%s: schema default %q, SetDefaults applies %q", sf.Name, want, got)
			}
			checked++
		}
	}
	check(reflect.ValueOf(spec))
	check(reflect.ValueOf(r))
	if checked < 15 {
		t.Errorf("checked only %d defaults", checked)
	}
}

func mustDuration(t *testing.T, s string) string {
	var d v1alpha1.Duration
	if err := d.UnmarshalText([]byte(s)); err != nil {
		t.Fatal(err)
	}
	return d.Duration.String()
}

// TestSchemaEnumsMatchValidation: every enum value the schema offers loads,
// and a value outside it is refused.
func TestSchemaEnumsMatchValidation(t *testing.T) {
	var schema map[string]any
	if err := json.Unmarshal(JSONSchema(), &schema); err != nil {
		t.Fatal(err)
	}
	node := schema["definitions"].(map[string]any)["Node"].(map[string]any)["properties"].(map[string]any)
	for _, field := range []string{"driver", "logLevel"} {
		enum := node[field].(map[string]any)["enum"].([]any)
		for _, v := range append(slices.Clone(enum), "bogus") {
			doc := fmt.Sprintf("apiVersion: vzfleet.dev/v1alpha1\nkind: Inventory\nhosts:\n- name: h\n  ssh: {address: h, user: u}\n  guestSSH: {password: {env: P}}\n  node: {%s: %s}\n", field, v)
			_, err := Parse([]byte(doc), "t.yaml", testOptions()...)
			if (err == nil) != (v != "bogus") {
				t.Errorf("%s: %v: got err=%v", field, v, err)
			}
		}
	}
}

// TestSchemaAgreesWithLoad runs a real JSON Schema validator (kube-openapi's,
// with the definitions inlined since it does not follow $ref): every file
// Load accepts passes the schema, and the mistakes a schema can see fail it.
func TestSchemaAgreesWithLoad(t *testing.T) {
	var raw map[string]any
	if err := json.Unmarshal(JSONSchema(), &raw); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(inlineRefs(raw, raw["definitions"].(map[string]any)))
	if err != nil {
		t.Fatal(err)
	}
	var schema spec.Schema
	if err := json.Unmarshal(b, &schema); err != nil {
		t.Fatal(err)
	}
	check := func(file string) error {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		var doc any
		if err := yaml.Unmarshal(data, &doc); err != nil {
			t.Fatal(err)
		}
		js, err := json.Marshal(doc)
		if err != nil {
			t.Fatal(err)
		}
		var v any
		if err := json.Unmarshal(js, &v); err != nil {
			t.Fatal(err)
		}
		return validate.AgainstSchema(&schema, v, strfmt.Default)
	}
	valid, _ := filepath.Glob("testdata/valid/*.yaml")
	for _, f := range append(valid, "../examples/inventory.yaml") {
		if err := check(f); err != nil {
			t.Errorf("%s loads but fails the schema:\n%v", f, err)
		}
	}
	for _, name := range []string{"unknown-field", "out-of-range", "inline-secret", "wrong-types", "wrong-apiversion", "bad-scalars", "no-hosts", "secret-values-in-refs"} {
		if err := check("testdata/invalid/" + name + ".yaml"); err == nil {
			t.Errorf("%s: the schema accepts it", name)
		}
	}
}

func inlineRefs(v any, defs map[string]any) any {
	switch x := v.(type) {
	case map[string]any:
		if ref, ok := x["$ref"].(string); ok {
			return inlineRefs(defs[strings.TrimPrefix(ref, "#/definitions/")], defs)
		}
		out := map[string]any{}
		for k, val := range x {
			if k != "definitions" && k != "$schema" && k != "$id" {
				out[k] = inlineRefs(val, defs)
			}
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i := range x {
			out[i] = inlineRefs(x[i], defs)
		}
		return out
	}
	return v
}
