// Package strictyaml decodes a gopkg.in/yaml.v3 node tree into Go structs
// strictly: unknown fields, duplicate keys and wrong scalar types are errors,
// each with the YAML position and the field path of the offending value, and
// decoding goes on after an error so one run reports every problem.
//
// yaml.v3's own decoder stops at the first structural error and reports only
// a line, so the inventory loader parses into a *yaml.Node and decodes with
// this package instead. Alias expansion is charged against a budget, which
// makes alias bombs ("billion laughs") fail fast instead of eating memory.
package strictyaml

import (
	"encoding"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Position is a 1-based line and column in the YAML source.
type Position struct {
	Line   int
	Column int
}

// Error is one problem found while decoding.
type Error struct {
	Path string // field path, e.g. hosts[2].ssh.port
	Pos  Position
	Msg  string
}

func (e *Error) Error() string {
	return fmt.Sprintf("%d:%d: %s: %s", e.Pos.Line, e.Pos.Column, e.Path, e.Msg)
}

// Hinter is implemented by struct types that want to explain themselves when
// the document gives a scalar instead of a mapping, or an unknown field: the
// returned text is appended to the error. Secret references use it to say
// that secrets are never written inline.
type Hinter interface {
	YAMLHint() string
}

// Extensible is implemented by struct types that accept free-form fields
// whose names start with a prefix (like docker compose's x- fields), which
// are skipped. They give YAML anchors a home.
type Extensible interface {
	YAMLExtensionPrefix() string
}

// MaxErrors caps how many errors one decode collects; garbage input would
// otherwise produce one error per node.
const MaxErrors = 50

// Decoder decodes one document. Use a fresh Decoder per document.
type Decoder struct {
	budget    int
	exhausted bool
	errs      []*Error
	positions map[string]Position
	active    map[*yaml.Node]bool // aliases being expanded, to break cycles
	quiet     int                 // >0: inside a Hinter, values are not echoed
	outer     *yaml.Node          // the outermost alias being expanded
	fields    map[reflect.Type][]field
	capped    *Error // set once MaxErrors were collected
}

// NewDecoder returns a Decoder for the document rooted at root. The node
// budget is twice the number of nodes written in the document plus a small
// allowance, so aliases may at most double the work a document causes.
func NewDecoder(root *yaml.Node) *Decoder {
	return &Decoder{
		budget:    2*CountNodes(root) + 1000,
		positions: make(map[string]Position),
		active:    make(map[*yaml.Node]bool),
		fields:    make(map[reflect.Type][]field),
	}
}

// CountNodes counts the nodes written in the document, without following
// aliases. It walks iteratively, so deeply nested input cannot overflow the
// stack.
func CountNodes(root *yaml.Node) int {
	if root == nil {
		return 0
	}
	n := 0
	stack := []*yaml.Node{root}
	for len(stack) > 0 {
		top := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		n++
		stack = append(stack, top.Content...)
	}
	return n
}

// Errors returns the errors collected so far, in document order.
func (d *Decoder) Errors() []*Error {
	out := append([]*Error(nil), d.errs...)
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i].Pos, out[j].Pos
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Column < b.Column
	})
	if d.capped != nil {
		out = append(out, d.capped)
	}
	return out
}

// Positions maps every decoded field path to the position of its value.
func (d *Decoder) Positions() map[string]Position { return d.positions }

// Decode decodes n into out (a non-nil pointer), naming values below path.
func (d *Decoder) Decode(n *yaml.Node, path string, out any) {
	v := reflect.ValueOf(out)
	if v.Kind() != reflect.Pointer || v.IsNil() {
		panic("strictyaml: Decode needs a non-nil pointer")
	}
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return
		}
		n = n.Content[0]
	}
	d.decode(n, path, v.Elem())
}

func (d *Decoder) fail(n *yaml.Node, path, format string, args ...any) {
	if len(d.errs) >= MaxErrors {
		if d.capped == nil {
			d.capped = &Error{Path: path, Pos: pos(n), Msg: fmt.Sprintf("more than %d errors; fix the ones above first", MaxErrors)}
		}
		return
	}
	d.errs = append(d.errs, &Error{Path: path, Pos: pos(n), Msg: fmt.Sprintf(format, args...)})
}

func pos(n *yaml.Node) Position { return Position{Line: n.Line, Column: n.Column} }

// spend charges one node against the budget; false means stop decoding.
func (d *Decoder) spend(n *yaml.Node, path string) bool {
	if d.exhausted {
		return false
	}
	d.budget--
	if d.budget < 0 {
		d.exhausted = true
		if d.outer != nil {
			n = d.outer // report where the expansion was asked for
		}
		d.fail(n, path, "document expands to too many nodes (alias bomb?); write the values out instead of nesting aliases")
		return false
	}
	return true
}

// resolve follows an alias to the node it names. The alias's own position is
// kept for error messages, since that is where the user wrote the value.
func (d *Decoder) resolve(n *yaml.Node, path string) (*yaml.Node, func(), bool) {
	if n.Kind != yaml.AliasNode {
		return n, func() {}, true
	}
	if n.Alias == nil {
		d.fail(n, path, "unknown alias *%s", n.Value)
		return nil, nil, false
	}
	if d.active[n] {
		d.fail(n, path, "alias *%s refers to itself", n.Value)
		return nil, nil, false
	}
	d.active[n] = true
	if len(d.active) == 1 {
		d.outer = n
	}
	done := func() {
		delete(d.active, n)
		if len(d.active) == 0 {
			d.outer = nil
		}
	}
	target, release, ok := d.resolve(n.Alias, path)
	if !ok {
		done()
		return nil, nil, false
	}
	return target, func() { release(); done() }, true
}

var textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()

func (d *Decoder) decode(n *yaml.Node, path string, v reflect.Value) {
	if !d.spend(n, path) {
		return
	}
	at := n
	n, release, ok := d.resolve(n, path)
	if !ok {
		return
	}
	defer release()
	d.positions[path] = pos(at)

	if isNull(n) {
		v.SetZero()
		return
	}
	if v.Kind() == reflect.Pointer {
		elem := reflect.New(v.Type().Elem())
		d.decodeValue(n, at, path, elem.Elem())
		v.Set(elem)
		return
	}
	d.decodeValue(n, at, path, v)
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" }

// describe names a node's kind and, outside secret references, its value.
func (d *Decoder) describe(n *yaml.Node) string {
	if d.quiet > 0 {
		return kindOnly(n)
	}
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!str":
			return fmt.Sprintf("the string %q", clip(n.Value))
		case "!!int":
			return "the integer " + clip(n.Value)
		case "!!float":
			return "the number " + clip(n.Value)
		case "!!bool":
			return "the boolean " + n.Value
		case "!!timestamp":
			return "the date " + clip(n.Value)
		default:
			return fmt.Sprintf("%s %q", n.ShortTag(), clip(n.Value))
		}
	default:
		return "something else"
	}
}

func kindOnly(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return "a single value"
	default:
		return "something else"
	}
}

// clip keeps error messages short and never echoes a long value (which may
// be a secret pasted in the wrong place) in full.
func clip(s string) string {
	if len(s) > 40 {
		return s[:20] + "..."
	}
	return s
}

func (d *Decoder) decodeValue(n, at *yaml.Node, path string, v reflect.Value) {
	if v.CanAddr() && v.Addr().Type().Implements(textUnmarshaler) {
		if n.Kind != yaml.ScalarNode {
			d.fail(at, path, "expected a single value, got %s", d.describe(n))
			return
		}
		if err := v.Addr().Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(n.Value)); err != nil {
			d.fail(at, path, "%v", err)
		}
		return
	}
	switch v.Kind() {
	case reflect.String:
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
			hint := ""
			if n.Kind == yaml.ScalarNode && d.quiet == 0 {
				hint = fmt.Sprintf("; quote it (\"%s\") if you mean the text", clip(n.Value))
			}
			d.fail(at, path, "expected a string, got %s%s", d.describe(n), hint)
			return
		}
		v.SetString(n.Value)
	case reflect.Bool:
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" {
			d.fail(at, path, "expected true or false, got %s", d.describe(n))
			return
		}
		v.SetBool(strings.EqualFold(n.Value, "true"))
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
			d.fail(at, path, "expected an integer, got %s", d.describe(n))
			return
		}
		i, err := strconv.ParseInt(strings.ReplaceAll(n.Value, "_", ""), 0, v.Type().Bits())
		if err != nil {
			d.fail(at, path, "integer %s is out of range", d.describe(n))
			return
		}
		v.SetInt(i)
	case reflect.Slice:
		d.decodeSlice(n, at, path, v)
	case reflect.Map:
		d.decodeMap(n, at, path, v)
	case reflect.Struct:
		d.decodeStruct(n, at, path, v)
	default:
		panic(fmt.Sprintf("strictyaml: unsupported type %s at %s", v.Type(), path))
	}
}

func (d *Decoder) decodeSlice(n, at *yaml.Node, path string, v reflect.Value) {
	if n.Kind != yaml.SequenceNode {
		d.fail(at, path, "expected a list, got %s", d.describe(n))
		return
	}
	s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, item := range n.Content {
		d.decode(item, fmt.Sprintf("%s[%d]", path, i), s.Index(i))
		if d.exhausted {
			return
		}
	}
	v.Set(s)
}

func (d *Decoder) decodeMap(n, at *yaml.Node, path string, v reflect.Value) {
	if n.Kind != yaml.MappingNode {
		d.fail(at, path, "expected a mapping, got %s", d.describe(n))
		return
	}
	if v.Type().Key().Kind() != reflect.String {
		panic("strictyaml: map keys must be strings")
	}
	m := reflect.MakeMap(v.Type())
	for _, p := range d.pairs(n, path, joinKey) {
		key, ok := d.key(p.key, path)
		if !ok {
			continue
		}
		sub := joinKey(path, key)
		elem := reflect.New(v.Type().Elem()).Elem()
		d.decode(p.val, sub, elem)
		m.SetMapIndex(reflect.ValueOf(key).Convert(v.Type().Key()), elem)
		if d.exhausted {
			return
		}
	}
	v.Set(m)
}

// key returns a mapping key's text; keys must be plain strings.
func (d *Decoder) key(k *yaml.Node, path string) (string, bool) {
	k, release, ok := d.resolve(k, path)
	if !ok {
		return "", false
	}
	defer release()
	if k.Kind != yaml.ScalarNode {
		d.fail(k, path, "a key must be a string, got %s", d.describe(k))
		return "", false
	}
	if k.ShortTag() != "!!str" {
		d.fail(k, path, "a key must be a string, got %s; quote it", d.describe(k))
		return "", false
	}
	return k.Value, true
}

type pair struct {
	key, val *yaml.Node
}

// pairs lists a mapping's key/value pairs with YAML merge keys (<<) expanded:
// explicit keys win over merged ones and earlier merged mappings over later
// ones. Duplicate explicit keys are reported.
func (d *Decoder) pairs(n *yaml.Node, path string, sub func(path, key string) string) []pair {
	var explicit, merged []pair
	seen := make(map[string]*yaml.Node)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			merged = append(merged, d.mergeSources(val, path, sub)...)
			continue
		}
		if k.Kind == yaml.ScalarNode {
			if first, dup := seen[k.Value]; dup {
				d.fail(k, sub(path, k.Value), "duplicate key %q (first at line %d:%d); remove one of them",
					clip(k.Value), first.Line, first.Column)
				continue
			}
			seen[k.Value] = k
		}
		explicit = append(explicit, pair{k, val})
	}
	for _, p := range merged {
		if p.key.Kind == yaml.ScalarNode {
			if _, dup := seen[p.key.Value]; dup {
				continue
			}
			seen[p.key.Value] = p.key
		}
		explicit = append(explicit, p)
	}
	return explicit
}

// mergeSources expands the value of a merge key: a mapping or a list of
// mappings, usually given as aliases.
func (d *Decoder) mergeSources(val *yaml.Node, path string, sub func(path, key string) string) []pair {
	if !d.spend(val, path) {
		return nil
	}
	n, release, ok := d.resolve(val, path)
	if !ok {
		return nil
	}
	defer release()
	switch n.Kind {
	case yaml.MappingNode:
		return d.pairs(n, path, sub)
	case yaml.SequenceNode:
		var out []pair
		for _, item := range n.Content {
			if !d.spend(item, path) {
				return out
			}
			m, rel, ok := d.resolve(item, path)
			if !ok {
				continue
			}
			if m.Kind != yaml.MappingNode {
				d.fail(item, path, "a merge key (<<) takes mappings, got %s", d.describe(m))
			} else {
				out = append(out, d.pairs(m, path, sub)...)
			}
			rel()
		}
		return out
	default:
		d.fail(val, path, "a merge key (<<) takes a mapping or a list of mappings, got %s", d.describe(n))
		return nil
	}
}

func joinKey(path, key string) string { return path + "[" + key + "]" }

func joinField(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

type field struct {
	name  string
	index []int
}

// fields lists a struct's YAML fields, flattening `yaml:",inline"` structs.
func fields(t reflect.Type) []field {
	var out []field
	for i := range t.NumField() {
		sf := t.Field(i)
		tag := sf.Tag.Get("yaml")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" || (!sf.IsExported() && !sf.Anonymous) {
			continue
		}
		if opts == "inline" {
			for _, f := range fields(sf.Type) {
				out = append(out, field{f.name, append([]int{i}, f.index...)})
			}
			continue
		}
		if name == "" {
			panic(fmt.Sprintf("strictyaml: field %s.%s has no yaml name", t.Name(), sf.Name))
		}
		out = append(out, field{name, []int{i}})
	}
	return out
}

// FieldNames lists the YAML field names of a struct type, in declaration order.
func FieldNames(t reflect.Type) []string {
	var names []string
	for _, f := range fields(t) {
		names = append(names, f.name)
	}
	return names
}

func (d *Decoder) decodeStruct(n, at *yaml.Node, path string, v reflect.Value) {
	hint := ""
	if h, ok := v.Addr().Interface().(Hinter); ok {
		hint = "; " + h.YAMLHint()
	}
	if n.Kind != yaml.MappingNode {
		// A Hinter (a secret reference) given a scalar most likely got the
		// secret itself: name the kind of value, never the value.
		d.quiet++
		d.fail(at, path, "expected a mapping, got %s%s", d.describe(n), hint)
		d.quiet--
		return
	}
	if hint != "" {
		d.quiet++
		defer func() { d.quiet-- }()
	}
	extPrefix := ""
	if e, ok := v.Addr().Interface().(Extensible); ok {
		extPrefix = e.YAMLExtensionPrefix()
	}
	fs, ok := d.fields[v.Type()]
	if !ok {
		fs = fields(v.Type())
		d.fields[v.Type()] = fs
	}
	for _, p := range d.pairs(n, path, joinField) {
		key, ok := d.key(p.key, path)
		if !ok {
			continue
		}
		if extPrefix != "" && strings.HasPrefix(key, extPrefix) {
			continue
		}
		i := slices.IndexFunc(fs, func(f field) bool { return f.name == key })
		if i < 0 {
			if d.quiet > 0 {
				d.fail(p.key, path, "unknown field%s", hint)
			} else {
				d.fail(p.key, joinField(path, key), "unknown field %q%s", clip(key), suggest(key, fs))
			}
			continue
		}
		d.decode(p.val, joinField(path, key), v.FieldByIndex(fs[i].index))
		if d.exhausted {
			return
		}
	}
}

// suggest names the closest known field, or lists them all.
func suggest(key string, fs []field) string {
	best, bestDist := "", 3
	names := make([]string, 0, len(fs))
	for _, f := range fs {
		names = append(names, f.name)
		if dist := editDistance(strings.ToLower(key), strings.ToLower(f.name)); dist < bestDist {
			best, bestDist = f.name, dist
		}
	}
	if best != "" {
		return fmt.Sprintf("; did you mean %q?", best)
	}
	return "; known fields: " + strings.Join(names, ", ")
}

func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 64
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
