package inventory

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"
	"strings"

	"github.com/vzfleet/vzfleet/inventory/v1alpha1"
)

// SchemaID is the $id of the inventory JSON Schema.
const SchemaID = "https://vzfleet.dev/schemas/inventory-v1alpha1.json"

// JSONSchema returns a JSON Schema (draft-07) of the inventory file format,
// generated from the v1alpha1 types and their doc, default, enum, minimum,
// maximum, pattern and required tags. Editors use it for completion and
// inline docs, e.g. with a first line of
//
//	# yaml-language-server: $schema=inventory.schema.json
//
// The schema is a guide for editors; Load is the authority (it also checks
// what a schema cannot, such as unique host names).
func JSONSchema() []byte {
	b, err := generateSchema()
	if err != nil {
		panic(err) // the types are static: a test proves this never happens
	}
	return b
}

func generateSchema() ([]byte, error) {
	g := &schemaGen{defs: map[string]any{}}
	root, err := g.structSchema(reflect.TypeFor[v1alpha1.Inventory]())
	if err != nil {
		return nil, err
	}
	root["$schema"] = "http://json-schema.org/draft-07/schema#"
	root["$id"] = SchemaID
	root["title"] = "vzfleet inventory (" + v1alpha1.APIVersion + ")"
	root["description"] = "The Mac hosts fleetctl turns into Kubernetes nodes running macOS VMs, and how to reach and configure each."
	root["patternProperties"] = map[string]any{"^x-": map[string]any{"description": "Ignored: a place for YAML anchors (&name) that hosts reuse."}}
	root["definitions"] = g.defs
	b, err := json.MarshalIndent(root, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

type schemaGen struct {
	defs map[string]any
}

// schemaTyper is implemented by v1alpha1 scalar types with their own shape.
type schemaTyper interface {
	JSONSchemaType() map[string]any
}

var schemaTyperType = reflect.TypeFor[schemaTyper]()

// oneOfSetter is implemented by types of which exactly one field is set.
type oneOfSetter interface {
	OneOf() []string
}

func (g *schemaGen) typeSchema(t reflect.Type) (map[string]any, error) {
	if t.Kind() == reflect.Pointer {
		return g.typeSchema(t.Elem())
	}
	if t.Implements(schemaTyperType) {
		return reflect.Zero(t).Interface().(schemaTyper).JSONSchemaType(), nil
	}
	switch t.Kind() {
	case reflect.String:
		return map[string]any{"type": "string"}, nil
	case reflect.Bool:
		return map[string]any{"type": "boolean"}, nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return map[string]any{"type": "integer"}, nil
	case reflect.Slice:
		items, err := g.typeSchema(t.Elem())
		if err != nil {
			return nil, err
		}
		return map[string]any{"type": "array", "items": items}, nil
	case reflect.Map:
		values, err := g.typeSchema(t.Elem())
		if err != nil {
			return nil, err
		}
		return map[string]any{"type": "object", "additionalProperties": values}, nil
	case reflect.Struct:
		if _, done := g.defs[t.Name()]; !done {
			g.defs[t.Name()] = nil // reserve: recursion guard
			def, err := g.structSchema(t)
			if err != nil {
				return nil, err
			}
			g.defs[t.Name()] = def
		}
		return map[string]any{"$ref": "#/definitions/" + t.Name()}, nil
	}
	return nil, fmt.Errorf("schema: unsupported type %s", t)
}

func (g *schemaGen) structSchema(t reflect.Type) (map[string]any, error) {
	props := map[string]any{}
	var required []string
	if err := g.addFields(t, props, &required); err != nil {
		return nil, err
	}
	s := map[string]any{"type": "object", "additionalProperties": false, "properties": props}
	if len(required) > 0 {
		s["required"] = required
	}
	if o, ok := reflect.New(t).Interface().(oneOfSetter); ok {
		var alts []any
		for _, f := range o.OneOf() {
			alts = append(alts, map[string]any{"required": []string{f}})
		}
		s["oneOf"] = alts
	}
	return s, nil
}

func (g *schemaGen) addFields(t reflect.Type, props map[string]any, required *[]string) error {
	for i := range t.NumField() {
		sf := t.Field(i)
		name, opts, _ := strings.Cut(sf.Tag.Get("yaml"), ",")
		if opts == "inline" {
			if err := g.addFields(sf.Type, props, required); err != nil {
				return err
			}
			continue
		}
		doc := sf.Tag.Get("doc")
		if doc == "" {
			return fmt.Errorf("schema: %s.%s has no doc tag; describe it", t.Name(), sf.Name)
		}
		ts, err := g.typeSchema(sf.Type)
		if err != nil {
			return err
		}
		p := map[string]any{"description": doc}
		if ref, isRef := ts["$ref"]; isRef {
			// draft-07 ignores keywords beside $ref, so wrap it.
			p["allOf"] = []any{map[string]any{"$ref": ref}}
		} else {
			for k, v := range ts {
				p[k] = v
			}
		}
		if err := schemaKeywords(sf, p); err != nil {
			return err
		}
		props[name] = p
		if sf.Tag.Get("required") == "true" {
			*required = append(*required, name)
		}
	}
	return nil
}

// schemaKeywords copies the default, enum, minimum, maximum, minItems and
// pattern tags.
func schemaKeywords(sf reflect.StructField, p map[string]any) error {
	integer := func(s string) (int, error) {
		n, err := strconv.Atoi(s)
		if err != nil {
			return 0, fmt.Errorf("schema: %s: %q is not an integer", sf.Name, s)
		}
		return n, nil
	}
	if d, ok := sf.Tag.Lookup("default"); ok {
		var v any = d
		t := sf.Type
		if t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		switch t.Kind() {
		case reflect.Int:
			n, err := integer(d)
			if err != nil {
				return err
			}
			v = n
		case reflect.Bool:
			v = d == "true"
		default:
			if _, anyOf := p["anyOf"]; anyOf {
				if n, err := strconv.Atoi(d); err == nil {
					v = n
				}
			}
		}
		p["default"] = v
	}
	if e, ok := sf.Tag.Lookup("enum"); ok {
		var vals []any
		for v := range strings.SplitSeq(e, ",") {
			vals = append(vals, v)
		}
		p["enum"] = vals
	}
	for _, kw := range []string{"minimum", "maximum", "minItems"} {
		if s, ok := sf.Tag.Lookup(kw); ok {
			n, err := integer(s)
			if err != nil {
				return err
			}
			p[kw] = n
		}
	}
	if s, ok := sf.Tag.Lookup("pattern"); ok {
		p["pattern"] = s
	}
	return nil
}
