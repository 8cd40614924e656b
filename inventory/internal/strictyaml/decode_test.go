package strictyaml

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

type secret struct {
	File *string `yaml:"file"`
}

func (*secret) YAMLHint() string { return "reference it" }

type upper string

func (u *upper) UnmarshalText(b []byte) error {
	if strings.ToUpper(string(b)) != string(b) {
		return errors.New("must be upper case")
	}
	*u = upper(b)
	return nil
}

type inner struct {
	Port *int `yaml:"port"`
}

type base struct {
	Name string `yaml:"name"`
}

type doc struct {
	base   `yaml:",inline"`
	On     *bool             `yaml:"on"`
	Count  int8              `yaml:"count"`
	Inner  *inner            `yaml:"inner"`
	Tags   []string          `yaml:"tags"`
	Labels map[string]string `yaml:"labels"`
	Code   *upper            `yaml:"code"`
	Secret *secret           `yaml:"secret"`
}

func (*doc) YAMLExtensionPrefix() string { return "x-" }

func decode(t *testing.T, src string) (doc, []*Error) {
	t.Helper()
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(src), &n); err != nil {
		t.Fatalf("yaml: %v", err)
	}
	var out doc
	d := NewDecoder(&n)
	d.Decode(&n, "", &out)
	return out, d.Errors()
}

func TestDecodeValid(t *testing.T) {
	cases := []struct {
		name, src string
		check     func(doc) bool
	}{
		{"scalars", "name: a\non: true\ncount: 0x7f\ncode: AB", func(d doc) bool {
			return d.Name == "a" && *d.On && d.Count == 127 && *d.Code == "AB"
		}},
		{"null leaves unset", "inner: ~\ntags: null\non:", func(d doc) bool {
			return d.Inner == nil && d.Tags == nil && d.On == nil
		}},
		{"empty list is not unset", "tags: []", func(d doc) bool { return d.Tags != nil && len(d.Tags) == 0 }},
		{"alias", "x-p: &p {port: 22}\ninner: *p", func(d doc) bool { return *d.Inner.Port == 22 }},
		{"merge key, explicit wins", "x-p: &p {port: 22}\ninner: {<<: *p, port: 2222}", func(d doc) bool { return *d.Inner.Port == 2222 }},
		{"merge list, first wins", "x-a: &a {k: a}\nx-b: &b {k: b, j: b}\nlabels: {<<: [*a, *b]}", func(d doc) bool {
			return reflect.DeepEqual(d.Labels, map[string]string{"k": "a", "j": "b"})
		}},
		{"extension fields skipped", "x-anything: {deep: [1, 2]}\nname: n", func(d doc) bool { return d.Name == "n" }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, errs := decode(t, c.src)
			if len(errs) > 0 {
				t.Fatalf("errors: %v", errs)
			}
			if !c.check(got) {
				t.Errorf("decoded %+v", got)
			}
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	cases := []struct {
		name, src string
		want      []string
	}{
		{"unknown field with suggestion", "nmae: a", []string{`1:1: nmae: unknown field "nmae"; did you mean "name"?`}},
		{"unknown field lists fields", "zzzzzz: a", []string{`1:1: zzzzzz: unknown field "zzzzzz"; known fields: name, on, count, inner, tags, labels, code, secret`}},
		{"duplicate key", "name: a\nname: b", []string{`2:1: name: duplicate key "name" (first at line 1:1); remove one of them`}},
		{"duplicate map key", "labels: {a: x, a: y}", []string{`1:16: labels[a]: duplicate key "a"`}},
		{"string for int", `count: "3"`, []string{`1:8: count: expected an integer, got the string "3"`}},
		{"overflow", "count: 300", []string{`1:8: count: integer the integer 300 is out of range`}},
		{"yes is not a bool", "on: yes", []string{`1:5: on: expected true or false, got the string "yes"`}},
		{"int for string", "name: 12", []string{`1:7: name: expected a string, got the integer 12; quote it ("12")`}},
		{"date for string", "labels: {since: 2024-01-02}", []string{`1:17: labels[since]: expected a string, got the date 2024-01-02`}},
		{"list for map", "inner: [1]", []string{`1:8: inner: expected a mapping, got a list`}},
		{"map for list", "tags: {a: b}", []string{`1:7: tags: expected a list, got a mapping`}},
		{"text unmarshaler error", "code: ab", []string{`1:7: code: must be upper case`}},
		{"text unmarshaler wants scalar", "code: [AB]", []string{`1:7: code: expected a single value, got a list`}},
		{"non-string key", "labels: {1: a}", []string{`1:10: labels: a key must be a string, got the integer 1; quote it`}},
		{"several errors at once", "name: 1\ncount: x\nbogus: 1", []string{"1:7: name:", "2:8: count:", "3:1: bogus:"}},
		{"errors in list items", "tags: [a, [b], c, {d: e}]", []string{"1:11: tags[1]: expected a string, got a list", "1:19: tags[3]: expected a string, got a mapping"}},
		{"bad merge value", "inner: {<<: [1]}", []string{"1:14: inner: a merge key (<<) takes mappings, got the integer 1"}},
		{"hinted scalar hides value", "secret: hunter2", []string{"1:9: secret: expected a mapping, got a single value; reference it"}},
		{"hinted unknown field hides key", "secret: {hunter2: x}", []string{"1:10: secret: unknown field; reference it"}},
		{"hinted wrong type hides value", "secret: {file: 12345}", []string{"1:16: secret.file: expected a string, got a single value"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, errs := decode(t, c.src)
			var got []string
			for _, e := range errs {
				got = append(got, e.Error())
			}
			if len(got) != len(c.want) {
				t.Fatalf("got %d errors, want %d:\n%s", len(got), len(c.want), strings.Join(got, "\n"))
			}
			for i, w := range c.want {
				if !strings.HasPrefix(got[i], w) {
					t.Errorf("error %d:\n got %s\nwant %s...", i, got[i], w)
				}
				if strings.Contains(got[i], "hunter2") || strings.Contains(got[i], "12345") {
					t.Errorf("a hinted type's value was echoed: %s", got[i])
				}
			}
		})
	}
}

func TestAliasBombFailsFast(t *testing.T) {
	// Each level merges the previous one 9 times: 9^8 expansions if unchecked.
	var b strings.Builder
	b.WriteString("x-0: &l0 {k: v}\n")
	for i := 1; i <= 8; i++ {
		fmt.Fprintf(&b, "x-%d: &l%d {<<: [", i, i)
		for j := range 9 {
			if j > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "*l%d", i-1)
		}
		b.WriteString("]}\n")
	}
	b.WriteString("labels: *l8\n")
	_, errs := decode(t, b.String())
	if len(errs) != 1 || !strings.Contains(errs[0].Msg, "alias bomb") {
		t.Fatalf("want one alias bomb error, got %v", errs)
	}
	if errs[0].Pos.Line != 10 {
		t.Errorf("reported at line %d, want 10 where the alias is used", errs[0].Pos.Line)
	}
}

func TestAliasCycle(t *testing.T) {
	_, errs := decode(t, "x-a: &a {<<: *a}\ninner: *a")
	if len(errs) == 0 || !strings.Contains(errs[0].Msg, "refers to itself") {
		t.Fatalf("want a cycle error, got %v", errs)
	}
}

func TestErrorCap(t *testing.T) {
	src := "tags: [" + strings.Repeat("[x], ", 200) + "[x]]"
	_, errs := decode(t, src)
	if len(errs) != MaxErrors+1 || !strings.Contains(errs[MaxErrors].Msg, "fix the ones above first") {
		t.Fatalf("want %d errors ending with a cap notice, got %d", MaxErrors+1, len(errs))
	}
}

func TestPositions(t *testing.T) {
	var n yaml.Node
	if err := yaml.Unmarshal([]byte("name: a\ninner:\n  port: 22\ntags: [x, y]\nlabels: {k: v}\n"), &n); err != nil {
		t.Fatal(err)
	}
	var out doc
	d := NewDecoder(&n)
	d.Decode(&n, "", &out)
	want := map[string]Position{
		"name": {1, 7}, "inner": {3, 3}, "inner.port": {3, 9}, "tags[1]": {4, 11}, "labels[k]": {5, 13},
	}
	for path, p := range want {
		if got := d.Positions()[path]; got != p {
			t.Errorf("%s at %v, want %v", path, got, p)
		}
	}
}
