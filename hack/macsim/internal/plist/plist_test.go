package plist

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

const launchDaemon = `<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
	<key>Label</key>
	<string>dev.vzfleet.vz-node</string>
	<key>ProgramArguments</key>
	<array>
		<string>/usr/local/bin/vz-node</string>
		<string>--nodename=mac &amp; co</string>
	</array>
	<key>EnvironmentVariables</key>
	<dict>
		<key>KUBECONFIG</key>
		<string>/Library/Application Support/vzfleet/kubeconfig</string>
	</dict>
	<key>KeepAlive</key>
	<true/>
	<key>ThrottleInterval</key>
	<integer>0x0A</integer>
	<key>Ratio</key>
	<real>0.5</real>
	<key>Blob</key>
	<data>
	aGVs
	bG8=
	</data>
	<key>When</key>
	<date>2025-01-02T03:04:05Z</date>
</dict>
</plist>
`

func TestDecodeLaunchDaemon(t *testing.T) {
	v, err := Decode([]byte(launchDaemon))
	if err != nil {
		t.Fatal(err)
	}
	d, ok := v.(*Dict)
	if !ok {
		t.Fatalf("root is %T", v)
	}
	want := []string{"Label", "ProgramArguments", "EnvironmentVariables", "KeepAlive", "ThrottleInterval", "Ratio", "Blob", "When"}
	if strings.Join(d.Keys, ",") != strings.Join(want, ",") {
		t.Fatalf("keys %v, want %v", d.Keys, want)
	}
	if args := d.Values["ProgramArguments"].([]any); args[1] != "--nodename=mac & co" {
		t.Fatalf("argument: %q", args[1])
	}
	if d.Values["KeepAlive"] != true || d.Values["ThrottleInterval"] != int64(10) || d.Values["Ratio"] != 0.5 {
		t.Fatalf("scalars: %#v", d.Values)
	}
	if string(d.Values["Blob"].([]byte)) != "hello" {
		t.Fatalf("data: %q", d.Values["Blob"])
	}
	env := d.Values["EnvironmentVariables"].(*Dict)
	if env.Values["KUBECONFIG"] != "/Library/Application Support/vzfleet/kubeconfig" {
		t.Fatalf("env: %#v", env.Values)
	}
}

func TestDecodeErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, doc, want string
	}{
		{"empty", ``, "no <plist>"},
		{"not xml", `hello`, "Unexpected text"},
		{"wrong root", `<dict/>`, "want <plist>"},
		{"empty plist", `<plist version="1.0"></plist>`, "Empty <plist>"},
		{"two values", `<plist><true/><false/></plist>`, "more than one value"},
		{"unclosed", `<plist><dict><key>a</key><string>b</string></plist>`, "Malformed XML"},
		{"key without value", `<plist><dict><key>a</key></dict></plist>`, `Key "a" has no value`},
		{"two keys", `<plist><dict><key>a</key><key>b</key><true/></dict></plist>`, `Key "a" has no value`},
		{"value without key", `<plist><dict><string>x</string></dict></plist>`, "where a <key> was expected"},
		{"unknown element", `<plist><dict><key>a</key><bool/></dict></plist>`, "Unknown element <bool>"},
		{"bad integer", `<plist><integer>12a</integer></plist>`, "Invalid <integer>"},
		{"bad real", `<plist><real>x</real></plist>`, "Invalid <real>"},
		{"bad date", `<plist><date>yesterday</date></plist>`, "Invalid <date>"},
		{"bad data", `<plist><data>!!!</data></plist>`, "Invalid base64"},
		{"true with text", `<plist><true>yes</true></plist>`, "must be empty"},
		{"nested in string", `<plist><string>a<b/></string></plist>`, "inside <string>"},
		{"stray text in dict", `<plist><dict>oops<key>a</key><true/></dict></plist>`, "Unexpected text"},
		{"trailing garbage", `<plist><true/></plist>junk`, "after </plist>"},
		{"key outside dict", `<plist><key>a</key></plist>`, "outside a <dict>"},
		{"latin1", `<?xml version="1.0" encoding="ISO-8859-1"?><plist><true/></plist>`, "unsupported encoding"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode([]byte(tc.doc))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Decode(%q) = %v, want an error containing %q", tc.doc, err, tc.want)
			}
		})
	}
	if _, err := Decode([]byte("bplist00\x00\x01")); !errors.Is(err, ErrBinary) {
		t.Fatalf("binary plist: %v", err)
	}
}

func TestErrorLine(t *testing.T) {
	doc := "<plist>\n<dict>\n<key>a</key>\n<wat/>\n</dict>\n</plist>\n"
	_, err := Decode([]byte(doc))
	var se *SyntaxError
	if !errors.As(err, &se) || se.Line != 4 {
		t.Fatalf("error %v: want a SyntaxError on line 4", err)
	}
}

func TestRoundTrip(t *testing.T) {
	v, err := Decode([]byte(launchDaemon))
	if err != nil {
		t.Fatal(err)
	}
	enc, err := Encode(v)
	if err != nil {
		t.Fatal(err)
	}
	v2, err := Decode(enc)
	if err != nil {
		t.Fatalf("re-decoding %s: %v", enc, err)
	}
	enc2, _ := Encode(v2)
	if !bytes.Equal(enc, enc2) {
		t.Fatalf("round trip changed the document:\n%s\n---\n%s", enc, enc2)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte(launchDaemon))
	f.Add([]byte(`<plist><array><integer>-5</integer><real>1e3</real><false/></array></plist>`))
	f.Add([]byte(`<plist><dict><key>a</key><dict/></dict></plist>`))
	f.Add([]byte(`<plist><string>&lt;&amp;</string></plist>`))
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := Decode(data)
		if err != nil {
			return
		}
		enc, err := Encode(v)
		if err != nil {
			t.Fatalf("Encode of a decoded value: %v", err)
		}
		v2, err := Decode(enc)
		if err != nil {
			t.Fatalf("decoding our own encoding %q: %v", enc, err)
		}
		enc2, _ := Encode(v2)
		if !bytes.Equal(enc, enc2) {
			t.Fatalf("unstable round trip:\n%s\n---\n%s", enc, enc2)
		}
	})
}
