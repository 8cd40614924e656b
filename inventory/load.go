package inventory

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"unicode/utf8"

	"gopkg.in/yaml.v3"

	"github.com/vzfleet/vzfleet/inventory/internal/strictyaml"
	"github.com/vzfleet/vzfleet/inventory/v1alpha1"
)

// MaxFileSize bounds the inventory file. A thousand hosts fit in a tenth of
// it; anything larger is the wrong file or an attack, and is refused before
// parsing.
const MaxFileSize = 1 << 20

// Option adjusts Load and Parse.
type Option func(*options)

type options struct {
	home    string
	baseDir string
}

// WithHomeDir sets the directory ~ expands to (default: the current user's).
func WithHomeDir(dir string) Option { return func(o *options) { o.home = dir } }

// WithBaseDir sets the directory relative local paths are resolved against.
// Load uses the inventory file's directory; Parse the working directory.
func WithBaseDir(dir string) Option { return func(o *options) { o.baseDir = dir } }

// Load reads, decodes, merges, defaults and validates the inventory file at
// path. On failure the error joins one *Error per problem found (see
// Errors), each formatted file:line:col: field.path: message.
func Load(path string, opts ...Option) (*Inventory, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read inventory: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read inventory %s: %w", path, err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("read inventory %s: %w", path, err)
	}
	return Parse(data, path, append([]Option{WithBaseDir(filepath.Dir(abs))}, opts...)...)
}

// Parse is Load for an inventory already in memory; name is used in error
// messages.
func Parse(data []byte, name string, opts ...Option) (*Inventory, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if o.baseDir == "" {
		wd, err := os.Getwd()
		if err != nil {
			return nil, fmt.Errorf("inventory %s: resolve relative paths: %w", name, err)
		}
		o.baseDir = wd
	}
	root, err := parseYAML(data, name)
	if err != nil {
		return nil, err
	}
	ext, pos, err := decode(root, name)
	if err != nil {
		return nil, err
	}
	inv := convert(ext, name, pos)
	l := newErrorList(name, pos)
	inv.resolveLocalPaths(l, o)
	inv.validate(l)
	if err := l.err(); err != nil {
		return nil, err
	}
	return inv, nil
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// parseYAML parses one YAML document into a node tree. Aliases are not
// expanded here; the strict decoder charges them against a budget.
func parseYAML(data []byte, name string) (root *yaml.Node, err error) {
	fail := func(format string, args ...any) error {
		return &Error{File: name, Message: fmt.Sprintf(format, args...)}
	}
	switch {
	case len(data) > MaxFileSize:
		return nil, fail("file is larger than %d KiB; an inventory is a small YAML file, is this the right one?", MaxFileSize>>10)
	case bytes.IndexByte(data, 0) >= 0 || !utf8.Valid(data):
		return nil, fail("not a UTF-8 text file; an inventory is a YAML file")
	}
	defer func() {
		// yaml.v3 has panicked on hostile input before; never take the
		// process down over a bad file.
		if r := recover(); r != nil {
			root, err = nil, fail("invalid YAML: %v", r)
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fail("file is empty; start from examples/inventory.yaml")
		}
		return nil, yamlError(name, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		if err != nil {
			return nil, yamlError(name, err)
		}
		return nil, &Error{File: name, Line: extra.Line, Column: extra.Column,
			Message: "a second YAML document (after ---); an inventory is one document, remove the extra one"}
	}
	return &doc, nil
}

// yamlError turns yaml.v3's "yaml: line N: msg" into an Error. yaml.v3 does
// not report a column for syntax errors, so none is given.
func yamlError(name string, err error) error {
	if m := yamlLineRE.FindStringSubmatch(err.Error()); m != nil {
		line, _ := strconv.Atoi(m[1])
		return &Error{File: name, Line: line, Message: "invalid YAML: " + m[2]}
	}
	return &Error{File: name, Message: "invalid YAML: " + err.Error()}
}

// decode checks the document's apiVersion and kind, then decodes it strictly
// into the versioned types.
func decode(doc *yaml.Node, name string) (*v1alpha1.Inventory, map[string]position, error) {
	if len(doc.Content) == 0 {
		return nil, nil, &Error{File: name, Message: "file is empty; start from examples/inventory.yaml"}
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, nil, &Error{File: name, Line: root.Line, Column: root.Column,
			Message: "an inventory is a mapping starting with apiVersion: " + v1alpha1.APIVersion + " and kind: " + v1alpha1.Kind}
	}
	if err := checkTypeMeta(root, name); err != nil {
		return nil, nil, err
	}
	d := strictyaml.NewDecoder(doc)
	var inv v1alpha1.Inventory
	d.Decode(doc, "", &inv)
	if errs := d.Errors(); len(errs) > 0 {
		out := make([]error, len(errs))
		for i, e := range errs {
			out[i] = &Error{File: name, Line: e.Pos.Line, Column: e.Pos.Column, Path: e.Path, Message: e.Msg}
		}
		return nil, nil, errors.Join(out...)
	}
	return &inv, d.Positions(), nil
}

// checkTypeMeta reads apiVersion and kind before anything else: with the
// wrong version every other field could be reported as unknown, which would
// bury the one error that matters.
func checkTypeMeta(root *yaml.Node, name string) error {
	found := map[string]*yaml.Node{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k := root.Content[i]
		if k.Value == "apiVersion" || k.Value == "kind" {
			found[k.Value] = root.Content[i+1]
		}
	}
	var errs []error
	for _, f := range []struct{ key, want string }{{"apiVersion", v1alpha1.APIVersion}, {"kind", v1alpha1.Kind}} {
		v, ok := found[f.key]
		switch {
		case !ok:
			errs = append(errs, &Error{File: name, Line: root.Line, Column: root.Column, Path: f.key,
				Message: fmt.Sprintf("required: add %s: %s at the top", f.key, f.want)})
		case v.Kind != yaml.ScalarNode || v.Value != f.want:
			errs = append(errs, &Error{File: name, Line: v.Line, Column: v.Column, Path: f.key,
				Message: fmt.Sprintf("unsupported %s %q: this fleetctl reads %s", f.key, clip(v.Value), f.want)})
		}
	}
	return errors.Join(errs...)
}

func clip(s string) string {
	if len(s) > 40 {
		return s[:20] + "..."
	}
	return s
}
