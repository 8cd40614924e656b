package templates

import (
	"bytes"
	"encoding/xml"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"gopkg.in/yaml.v3"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./templates -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the rendering (go test ./templates -update rewrites it):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

func standardJob() Launchd {
	return Launchd{
		Label:            "dev.vzfleet.vz-node",
		ProgramArguments: []string{"/usr/local/bin/vz-node", "--config", "/Library/Application Support/vzfleet/vz-node.yaml"},
		Environment: map[string]string{
			"KUBECONFIG":                 "/Library/Application Support/vzfleet/kubeconfig",
			"APISERVER_CERT_LOCATION":    "/Library/Application Support/vzfleet/kubelet-serving.crt",
			"APISERVER_KEY_LOCATION":     "/Library/Application Support/vzfleet/kubelet-serving.key",
			"APISERVER_CA_CERT_LOCATION": "/Library/Application Support/vzfleet/ca.crt",
			"VZ_SSH_USER":                "admin",
			"VZ_SSH_KEY_FILE":            "/Library/Application Support/vzfleet/guest-ssh-key",
		},
		RunAtLoad:         true,
		KeepAlive:         true,
		ThrottleInterval:  10,
		StandardOutPath:   "/Library/Logs/vz-node.log",
		StandardErrorPath: "/Library/Logs/vz-node.log",
	}
}

func TestRenderGolden(t *testing.T) {
	hostile := standardJob()
	hostile.Label = `evil</string><key>Program</key><string>/bin/sh`
	hostile.ProgramArguments = []string{"/usr/local/bin/vz-node", `--x=<a href="&amp;">'</a>`, "]]><!--", "tab\there\nnewline"}
	hostile.Environment = map[string]string{"A&B": "<dict/>", "Q": `"'`}
	hostile.WorkingDirectory = "/tmp/&lt;"
	hostile.KeepAlive = false

	cases := []struct {
		name   string
		render func() ([]byte, error)
	}{
		{"launchd.plist", func() ([]byte, error) { return RenderLaunchd(standardJob()) }},
		{"launchd-hostile.plist", func() ([]byte, error) { return RenderLaunchd(hostile) }},
		{"entitlements-nat.plist", func() ([]byte, error) { return RenderEntitlements(Entitlements{}) }},
		{"entitlements-bridged.plist", func() ([]byte, error) { return RenderEntitlements(Entitlements{Bridged: true}) }},
		{"vz-node.yaml", func() ([]byte, error) { return RenderNodeConfig(standardConfig()) }},
		{"vz-node-minimal.yaml", func() ([]byte, error) {
			return RenderNodeConfig(NodeConfig{NodeName: "m", LogLevel: "info", Driver: "vz", MaxVMs: 2, ReserveCPU: "1", ReserveMemory: "2Gi", CacheDir: "/c", StateDir: "/s", Kubeconfig: "/k"})
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := c.render()
			if err != nil {
				t.Fatal(err)
			}
			golden(t, c.name, got)
		})
	}
}

func standardConfig() NodeConfig {
	return NodeConfig{
		NodeName: "mini-01", LogLevel: "info", Driver: "vz", MaxVMs: 2,
		ReserveCPU: "1", ReserveMemory: "2Gi", BridgeInterface: "en0", DockerHost: "unix:///Users/admin/.colima/default/docker.sock", SandboxImage: "mirror.example.com/pause:3.10.1", InternalIP: "10.20.0.11",
		CacheDir: "/Library/Caches/vzfleet", StateDir: "/var/db/vzfleet",
		Kubeconfig:   "/Library/Application Support/vzfleet/kubeconfig",
		CertPath:     "/Library/Application Support/vzfleet/kubelet-serving.crt",
		KeyPath:      "/Library/Application Support/vzfleet/kubelet-serving.key",
		ClientCAPath: "/Library/Application Support/vzfleet/ca.crt",
		SSHUser:      "admin", SSHKeyFile: "/Library/Application Support/vzfleet/guest-ssh-key",
	}
}

// plistValue is a decoded property list value: string, bool, int text,
// []any or map[string]any.
type plistValue = any

// parsePlist decodes the XML plist subset the templates write, so tests
// compare meaning, not bytes.
func parsePlist(data []byte) (map[string]any, error) {
	d := xml.NewDecoder(bytes.NewReader(data))
	d.Strict = true
	for {
		tok, err := d.Token()
		if err != nil {
			return nil, err
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "plist" {
			break
		}
	}
	v, err := plistNext(d)
	if err != nil {
		return nil, err
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("top level is %T, not a dict", v)
	}
	return m, nil
}

func plistNext(d *xml.Decoder) (plistValue, error) {
	for {
		tok, err := d.Token()
		if err != nil {
			return nil, err
		}
		switch t := tok.(type) {
		case xml.EndElement:
			return nil, io.EOF
		case xml.StartElement:
			switch t.Name.Local {
			case "string", "integer", "key":
				var s string
				if err := d.DecodeElement(&s, &t); err != nil {
					return nil, err
				}
				if t.Name.Local == "key" {
					return keyName(s), nil
				}
				return s, nil
			case "true", "false":
				if err := d.Skip(); err != nil {
					return nil, err
				}
				return t.Name.Local == "true", nil
			case "array":
				var out []any
				for {
					v, err := plistNext(d)
					if errors.Is(err, io.EOF) {
						return out, nil
					} else if err != nil {
						return nil, err
					}
					out = append(out, v)
				}
			case "dict":
				out := map[string]any{}
				for {
					k, err := plistNext(d)
					if errors.Is(err, io.EOF) {
						return out, nil
					} else if err != nil {
						return nil, err
					}
					key, ok := k.(keyName)
					if !ok {
						return nil, fmt.Errorf("dict entry without a key: %v", k)
					}
					v, err := plistNext(d)
					if err != nil {
						return nil, fmt.Errorf("value of %s: %w", key, err)
					}
					if _, dup := out[string(key)]; dup {
						return nil, fmt.Errorf("duplicate key %s", key)
					}
					out[string(key)] = v
				}
			default:
				return nil, fmt.Errorf("unexpected element <%s>", t.Name.Local)
			}
		}
	}
}

type keyName string

func TestLaunchdValuesSurviveRoundTrip(t *testing.T) {
	values := []string{
		"plain", "", `</string></array><key>Program</key><string>/bin/sh`, "a&b", "<!-- x -->", "]]>",
		`"quoted" 'single'`, "tab\tnl\ncr\r", "ünïcödé ✓ 🍎", "&amp;", "$(rm -rf /)", "`id`",
	}
	for _, v := range values {
		job := standardJob()
		job.Label = "label" + v
		job.ProgramArguments = []string{"/bin/vz-node", v}
		job.Environment = map[string]string{"K" + v: v}
		job.StandardOutPath = v
		out, err := RenderLaunchd(job)
		if err != nil {
			t.Fatalf("%q: %v", v, err)
		}
		checkJob(t, out, job)
	}
}

func checkJob(t testing.TB, out []byte, job Launchd) {
	t.Helper()
	m, err := parsePlist(out)
	if err != nil {
		t.Fatalf("rendered plist does not parse: %v\n%s", err, out)
	}
	if m["Label"] != job.Label {
		t.Errorf("Label = %q, want %q", m["Label"], job.Label)
	}
	args, _ := m["ProgramArguments"].([]any)
	if len(args) != len(job.ProgramArguments) {
		t.Fatalf("ProgramArguments = %q, want %q", args, job.ProgramArguments)
	}
	for i := range args {
		if args[i] != job.ProgramArguments[i] {
			t.Errorf("ProgramArguments[%d] = %q, want %q", i, args[i], job.ProgramArguments[i])
		}
	}
	env, _ := m["EnvironmentVariables"].(map[string]any)
	if len(env) != len(job.Environment) {
		t.Errorf("EnvironmentVariables = %q, want %q", env, job.Environment)
	}
	for k, v := range job.Environment {
		if env[k] != v {
			t.Errorf("EnvironmentVariables[%q] = %q, want %q", k, env[k], v)
		}
	}
	if m["StandardOutPath"] != job.StandardOutPath || m["KeepAlive"] != job.KeepAlive || m["RunAtLoad"] != job.RunAtLoad {
		t.Errorf("StandardOutPath/KeepAlive/RunAtLoad = %q/%v/%v, want %q/%v/%v",
			m["StandardOutPath"], m["KeepAlive"], m["RunAtLoad"], job.StandardOutPath, job.KeepAlive, job.RunAtLoad)
	}
	if want := fmt.Sprint(job.ThrottleInterval); m["ThrottleInterval"] != want {
		t.Errorf("ThrottleInterval = %v, want %s", m["ThrottleInterval"], want)
	}
}

func TestLaunchdRefusesWhatXMLCannotHold(t *testing.T) {
	for _, v := range []string{"nul\x00", "bell\x07", "esc\x1b[0m", "bad utf8 \xff", "\ufffe"} {
		job := standardJob()
		job.Environment = map[string]string{"X": v}
		if _, err := RenderLaunchd(job); !errors.Is(err, ErrInvalidValue) {
			t.Errorf("%q: err = %v, want ErrInvalidValue", v, err)
		}
	}
}

func TestLaunchdRequiredFields(t *testing.T) {
	for name, mod := range map[string]func(*Launchd){
		"no label":          func(l *Launchd) { l.Label = "" },
		"no arguments":      func(l *Launchd) { l.ProgramArguments = nil },
		"negative throttle": func(l *Launchd) { l.ThrottleInterval = -1 },
		"empty env name":    func(l *Launchd) { l.Environment = map[string]string{"": "x"} },
	} {
		job := standardJob()
		mod(&job)
		if _, err := RenderLaunchd(job); err == nil {
			t.Errorf("%s: rendered without an error", name)
		}
	}
}

func TestEntitlements(t *testing.T) {
	for _, bridged := range []bool{false, true} {
		out, err := RenderEntitlements(Entitlements{Bridged: bridged})
		if err != nil {
			t.Fatal(err)
		}
		m, err := parsePlist(out)
		if err != nil {
			t.Fatal(err)
		}
		if m["com.apple.security.virtualization"] != true {
			t.Errorf("bridged=%v: virtualization entitlement missing: %v", bridged, m)
		}
		if _, has := m["com.apple.vm.networking"]; has != bridged {
			t.Errorf("bridged=%v: com.apple.vm.networking present=%v", bridged, has)
		}
	}
}

func TestNodeConfigValuesSurviveRoundTrip(t *testing.T) {
	for _, v := range []string{"plain", "key: value", "- item", "#comment", "\"q\" 'q'", "multi\nline\n---\nsecond: doc", "{a: b}", "*alias", "&anchor", "!!binary x", "ünï ✓", "\x00\x07"} {
		c := standardConfig()
		c.NodeName, c.StateDir, c.BridgeInterface = v, v, v
		out, err := RenderNodeConfig(c)
		if err != nil {
			t.Fatalf("%q: %v", v, err)
		}
		var m map[string]any
		dec := yaml.NewDecoder(bytes.NewReader(out))
		if err := dec.Decode(&m); err != nil {
			t.Fatalf("%q: rendered config does not parse: %v\n%s", v, err, out)
		}
		if m["nodeName"] != v || m["stateDir"] != v || m["bridgeInterface"] != v {
			t.Errorf("%q: round trip gave nodeName=%q stateDir=%q bridgeInterface=%q", v, m["nodeName"], m["stateDir"], m["bridgeInterface"])
		}
		if m["maxVMs"] != 2 || len(m) != 18 {
			t.Errorf("%q: keys = %v", v, m)
		}
		var extra map[string]any
		if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
			t.Errorf("%q: a second YAML document followed: %v", v, extra)
		}
	}
}

func TestNodeConfigRequiredFields(t *testing.T) {
	c := standardConfig()
	c.NodeName = ""
	if _, err := RenderNodeConfig(c); err == nil {
		t.Error("an empty node name rendered")
	}
	c = standardConfig()
	c.KeyPath = ""
	if _, err := RenderNodeConfig(c); err == nil {
		t.Error("a cert without a key rendered")
	}
}

func FuzzLaunchdRoundTrip(f *testing.F) {
	for _, s := range []string{"", "a&b", "</string>", "]]>", "\x00", "\xff", "ü\n\t"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		job := standardJob()
		job.Label = "l" + v
		job.ProgramArguments = []string{v}
		job.Environment = map[string]string{"K": v}
		out, err := RenderLaunchd(job)
		if errors.Is(err, ErrInvalidValue) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		checkJob(t, out, job)
	})
}
