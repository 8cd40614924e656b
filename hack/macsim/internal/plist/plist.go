// Package plist reads and writes Apple XML property lists, strictly enough
// to stand in for `plutil -lint` and for launchd reading a LaunchDaemon plist:
// a document must be one <plist> holding exactly one value, dictionaries
// alternate <key> and value, and every element is one of the property list
// types (dict, array, string, integer, real, true, false, date, data).
package plist

import (
	"bytes"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
)

// Dict is a property list dictionary that keeps its keys in document order.
type Dict struct {
	Keys   []string
	Values map[string]any
}

// NewDict returns an empty dictionary.
func NewDict() *Dict { return &Dict{Values: map[string]any{}} }

// Set adds or replaces key.
func (d *Dict) Set(key string, v any) {
	if _, ok := d.Values[key]; !ok {
		d.Keys = append(d.Keys, key)
	}
	d.Values[key] = v
}

// Get returns the value under key.
func (d *Dict) Get(key string) (any, bool) {
	v, ok := d.Values[key]
	return v, ok
}

// Values of a decoded property list have these Go types: *Dict, []any,
// string, int64, float64, bool, time.Time and []byte.

// SyntaxError is a malformed property list, with the line it was found on.
type SyntaxError struct {
	Line int
	Msg  string
}

func (e *SyntaxError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s on line %d", e.Msg, e.Line)
	}
	return e.Msg
}

// ErrBinary is returned for binary property lists, which macsim does not read.
var ErrBinary = errors.New("binary property lists (bplist00) are not supported by macsim; write XML plists")

// Decode parses one XML property list document.
func Decode(data []byte) (any, error) {
	if bytes.HasPrefix(data, []byte("bplist")) {
		return nil, ErrBinary
	}
	p := &parser{dec: xml.NewDecoder(bytes.NewReader(data))}
	p.dec.Strict = true
	// The XML declaration may name UTF-8 in any case; anything else is refused.
	p.dec.CharsetReader = func(label string, r io.Reader) (io.Reader, error) {
		if strings.EqualFold(label, "utf-8") || strings.EqualFold(label, "utf8") {
			return r, nil
		}
		return nil, fmt.Errorf("unsupported encoding %q", label)
	}
	start, err := p.nextStart()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &SyntaxError{Msg: "Unexpected end of file: no <plist> element"}
		}
		return nil, err
	}
	if start.Name.Local != "plist" {
		return nil, p.errf("Root element is <%s>, want <plist>", start.Name.Local)
	}
	vstart, err := p.nextStart()
	if err != nil {
		if errors.Is(err, errEnd) {
			return nil, p.errf("Empty <plist>: it must hold one value")
		}
		return nil, p.eof(err)
	}
	v, err := p.value(vstart)
	if err != nil {
		return nil, err
	}
	if _, err := p.nextStart(); !errors.Is(err, errEnd) {
		if err == nil {
			return nil, p.errf("<plist> holds more than one value")
		}
		return nil, p.eof(err)
	}
	// Only whitespace, comments and processing instructions may follow.
	for {
		tok, err := p.dec.Token()
		if errors.Is(err, io.EOF) {
			return v, nil
		}
		if err != nil {
			return nil, p.wrap(err)
		}
		switch t := tok.(type) {
		case xml.CharData:
			if len(bytes.TrimSpace(t)) > 0 {
				return nil, p.errf("Unexpected text after </plist>")
			}
		case xml.Comment, xml.ProcInst:
		default:
			return nil, p.errf("Unexpected content after </plist>")
		}
	}
}

var errEnd = errors.New("end element")

type parser struct {
	dec *xml.Decoder
}

func (p *parser) line() int {
	l, _ := p.dec.InputPos()
	return l
}

func (p *parser) errf(format string, args ...any) error {
	return &SyntaxError{Line: p.line(), Msg: fmt.Sprintf(format, args...)}
}

func (p *parser) wrap(err error) error {
	var se *xml.SyntaxError
	if errors.As(err, &se) {
		return &SyntaxError{Line: se.Line, Msg: "Malformed XML: " + se.Msg}
	}
	return &SyntaxError{Line: p.line(), Msg: "Malformed XML: " + err.Error()}
}

func (p *parser) eof(err error) error {
	if errors.Is(err, io.EOF) {
		return p.errf("Unexpected end of file")
	}
	return err
}

// nextStart returns the next start element, skipping whitespace, comments,
// processing instructions and the DOCTYPE; errEnd when an end element comes
// first; an error for stray text.
func (p *parser) nextStart() (xml.StartElement, error) {
	for {
		tok, err := p.dec.Token()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return xml.StartElement{}, io.EOF
			}
			return xml.StartElement{}, p.wrap(err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			return t, nil
		case xml.EndElement:
			return xml.StartElement{}, errEnd
		case xml.CharData:
			if len(bytes.TrimSpace(t)) > 0 {
				return xml.StartElement{}, p.errf("Unexpected text %q outside a value", truncate(string(bytes.TrimSpace(t))))
			}
		}
	}
}

// text reads character data up to the end of the current element.
func (p *parser) text(name string) (string, error) {
	var b strings.Builder
	for {
		tok, err := p.dec.Token()
		if err != nil {
			return "", p.eof(p.wrapUnlessEOF(err))
		}
		switch t := tok.(type) {
		case xml.CharData:
			b.Write(t)
		case xml.EndElement:
			return b.String(), nil
		case xml.StartElement:
			return "", p.errf("Element <%s> inside <%s>", t.Name.Local, name)
		}
	}
}

func (p *parser) wrapUnlessEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return err
	}
	return p.wrap(err)
}

func (p *parser) value(start xml.StartElement) (any, error) {
	name := start.Name.Local
	switch name {
	case "dict":
		d := NewDict()
		for {
			k, err := p.nextStart()
			if errors.Is(err, errEnd) {
				return d, nil
			}
			if err != nil {
				return nil, p.eof(err)
			}
			if k.Name.Local != "key" {
				return nil, p.errf("Found <%s> where a <key> was expected in <dict>", k.Name.Local)
			}
			key, err := p.text("key")
			if err != nil {
				return nil, err
			}
			vs, err := p.nextStart()
			if errors.Is(err, errEnd) {
				return nil, p.errf("Key %q has no value", key)
			}
			if err != nil {
				return nil, p.eof(err)
			}
			if vs.Name.Local == "key" {
				return nil, p.errf("Key %q has no value", key)
			}
			v, err := p.value(vs)
			if err != nil {
				return nil, err
			}
			d.Set(key, v)
		}
	case "array":
		arr := []any{}
		for {
			vs, err := p.nextStart()
			if errors.Is(err, errEnd) {
				return arr, nil
			}
			if err != nil {
				return nil, p.eof(err)
			}
			v, err := p.value(vs)
			if err != nil {
				return nil, err
			}
			arr = append(arr, v)
		}
	case "string":
		return p.text(name)
	case "integer":
		s, err := p.text(name)
		if err != nil {
			return nil, err
		}
		return p.integer(strings.TrimSpace(s))
	case "real":
		s, err := p.text(name)
		if err != nil {
			return nil, err
		}
		f, perr := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if perr != nil {
			return nil, p.errf("Invalid <real> %q", truncate(s))
		}
		return f, nil
	case "true", "false":
		s, err := p.text(name)
		if err != nil {
			return nil, err
		}
		if strings.TrimSpace(s) != "" {
			return nil, p.errf("<%s> must be empty", name)
		}
		return name == "true", nil
	case "date":
		s, err := p.text(name)
		if err != nil {
			return nil, err
		}
		t, perr := time.Parse(time.RFC3339, strings.TrimSpace(s))
		if perr != nil {
			return nil, p.errf("Invalid <date> %q", truncate(s))
		}
		return t.UTC(), nil
	case "data":
		s, err := p.text(name)
		if err != nil {
			return nil, err
		}
		b, perr := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(s), ""))
		if perr != nil {
			return nil, p.errf("Invalid base64 in <data>")
		}
		return b, nil
	case "key":
		return nil, p.errf("<key> outside a <dict>")
	default:
		return nil, p.errf("Unknown element <%s>", name)
	}
}

func (p *parser) integer(s string) (int64, error) {
	neg := strings.HasPrefix(s, "-")
	digits := strings.TrimPrefix(strings.TrimPrefix(s, "-"), "+")
	base := 10
	if strings.HasPrefix(digits, "0x") || strings.HasPrefix(digits, "0X") {
		base, digits = 16, digits[2:]
	}
	u, err := strconv.ParseUint(digits, base, 64)
	if err != nil || digits == "" {
		return 0, p.errf("Invalid <integer> %q", truncate(s))
	}
	if neg {
		if u > 1<<63 {
			return 0, p.errf("<integer> %q out of range", truncate(s))
		}
		return -int64(u), nil
	}
	if u > math.MaxInt64 {
		// CoreFoundation keeps unsigned 64-bit values; launchd never needs them.
		return 0, p.errf("<integer> %q out of range", truncate(s))
	}
	return int64(u), nil
}

func truncate(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// Encode writes v as an XML property list document in Apple's layout.
func Encode(v any) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(xml.Header)
	b.WriteString(`<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">` + "\n")
	b.WriteString(`<plist version="1.0">` + "\n")
	if err := encode(&b, v, 0); err != nil {
		return nil, err
	}
	b.WriteString("</plist>\n")
	return b.Bytes(), nil
}

func encode(b *bytes.Buffer, v any, depth int) error {
	ind := strings.Repeat("\t", depth)
	esc := func(s string) string {
		var e bytes.Buffer
		_ = xml.EscapeText(&e, []byte(s))
		return e.String()
	}
	switch t := v.(type) {
	case *Dict:
		if len(t.Keys) == 0 {
			b.WriteString(ind + "<dict/>\n")
			return nil
		}
		b.WriteString(ind + "<dict>\n")
		for _, k := range t.Keys {
			b.WriteString(ind + "\t<key>" + esc(k) + "</key>\n")
			if err := encode(b, t.Values[k], depth+1); err != nil {
				return err
			}
		}
		b.WriteString(ind + "</dict>\n")
	case []any:
		if len(t) == 0 {
			b.WriteString(ind + "<array/>\n")
			return nil
		}
		b.WriteString(ind + "<array>\n")
		for _, e := range t {
			if err := encode(b, e, depth+1); err != nil {
				return err
			}
		}
		b.WriteString(ind + "</array>\n")
	case string:
		b.WriteString(ind + "<string>" + esc(t) + "</string>\n")
	case int64:
		b.WriteString(ind + "<integer>" + strconv.FormatInt(t, 10) + "</integer>\n")
	case int:
		b.WriteString(ind + "<integer>" + strconv.Itoa(t) + "</integer>\n")
	case float64:
		b.WriteString(ind + "<real>" + strconv.FormatFloat(t, 'g', -1, 64) + "</real>\n")
	case bool:
		if t {
			b.WriteString(ind + "<true/>\n")
		} else {
			b.WriteString(ind + "<false/>\n")
		}
	case time.Time:
		b.WriteString(ind + "<date>" + t.UTC().Format(time.RFC3339) + "</date>\n")
	case []byte:
		b.WriteString(ind + "<data>" + base64.StdEncoding.EncodeToString(t) + "</data>\n")
	default:
		return fmt.Errorf("plist: cannot encode %T", v)
	}
	return nil
}
