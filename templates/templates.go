// Package templates renders the files fleetctl installs on a Mac: vz-node's
// launchd plist, the entitlements vz-node is signed with, and vz-node's
// configuration file. The templates are embedded (FS); every value is
// escaped for its format (XML for plists, double-quoted YAML scalars for the
// config), and values no escaping can carry (control characters in XML) are
// refused, so a hostile label or path can never change a file's structure.
package templates

import (
	"bytes"
	"embed"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"slices"
	"strings"
	"text/template"
	"unicode/utf8"
)

// FS holds the template sources.
//
//go:embed launchd.plist.tmpl entitlements.plist.tmpl vz-node.yaml.tmpl
var FS embed.FS

var parsed = template.Must(template.New("").Option("missingkey=error").Funcs(template.FuncMap{
	"xml":  xmlText,
	"yaml": yamlString,
}).ParseFS(FS, "*.tmpl"))

// ErrInvalidValue is returned for values that cannot be written into a
// plist at all (control characters, invalid UTF-8).
var ErrInvalidValue = errors.New("value cannot be represented in a property list")

// Launchd is vz-node's launchd job.
type Launchd struct {
	Label            string
	ProgramArguments []string
	// Environment is written sorted by name, so the rendering is stable.
	Environment       map[string]string
	WorkingDirectory  string
	RunAtLoad         bool
	KeepAlive         bool
	ThrottleInterval  int // seconds between restarts launchd allows
	StandardOutPath   string
	StandardErrorPath string
}

type envVar struct{ Name, Value string }

// RenderLaunchd renders the job as an XML property list.
func RenderLaunchd(l Launchd) ([]byte, error) {
	switch {
	case l.Label == "":
		return nil, errors.New("launchd plist: the label is empty")
	case len(l.ProgramArguments) == 0:
		return nil, errors.New("launchd plist: ProgramArguments is empty")
	case l.ThrottleInterval < 0:
		return nil, fmt.Errorf("launchd plist: ThrottleInterval %d is negative", l.ThrottleInterval)
	}
	env := make([]envVar, 0, len(l.Environment))
	for k, v := range l.Environment {
		if k == "" {
			return nil, errors.New("launchd plist: an environment variable has an empty name")
		}
		env = append(env, envVar{k, v})
	}
	slices.SortFunc(env, func(a, b envVar) int { return strings.Compare(a.Name, b.Name) })
	data := struct {
		Launchd
		Environment []envVar
	}{l, env}
	return render("launchd.plist.tmpl", data)
}

// Entitlements are the code-signing entitlements vz-node needs.
type Entitlements struct {
	// Bridged adds com.apple.vm.networking, which bridged VM networking needs.
	Bridged bool
}

// RenderEntitlements renders the entitlements plist codesign takes.
func RenderEntitlements(e Entitlements) ([]byte, error) {
	return render("entitlements.plist.tmpl", e)
}

// NodeConfig is vz-node's configuration file (node.Config's YAML keys).
// Only settings vz-node knows are written: it rejects unknown keys.
type NodeConfig struct {
	NodeName        string
	LogLevel        string
	Driver          string
	MaxVMs          int
	ReserveCPU      string
	ReserveMemory   string
	BridgeInterface string
	DockerHost      string
	SandboxImage    string
	InternalIP      string
	CacheDir        string
	StateDir        string
	Kubeconfig      string
	CertPath        string
	KeyPath         string
	ClientCAPath    string
	SSHUser         string
	SSHKeyFile      string
}

// RenderNodeConfig renders vz-node's YAML configuration.
func RenderNodeConfig(c NodeConfig) ([]byte, error) {
	if c.NodeName == "" {
		return nil, errors.New("vz-node config: the node name is empty")
	}
	if (c.CertPath == "") != (c.KeyPath == "") {
		return nil, errors.New("vz-node config: certPath and keyPath go together")
	}
	return render("vz-node.yaml.tmpl", c)
}

func render(name string, data any) ([]byte, error) {
	var b bytes.Buffer
	if err := parsed.ExecuteTemplate(&b, name, data); err != nil {
		return nil, fmt.Errorf("rendering %s: %w", name, err)
	}
	return b.Bytes(), nil
}

// xmlText escapes s for XML character data. It refuses what XML 1.0 cannot
// hold rather than silently replacing it, so the installed file says what
// the inventory says or nothing is installed.
func xmlText(s string) (string, error) {
	if !utf8.ValidString(s) {
		return "", fmt.Errorf("%w: %q is not valid UTF-8", ErrInvalidValue, s)
	}
	for _, r := range s {
		if !isXMLChar(r) {
			return "", fmt.Errorf("%w: %q holds the character %U, which XML 1.0 does not allow", ErrInvalidValue, s, r)
		}
	}
	var b strings.Builder
	if err := xml.EscapeText(&b, []byte(s)); err != nil {
		return "", err
	}
	return b.String(), nil
}

// isXMLChar is XML 1.0's Char production.
func isXMLChar(r rune) bool {
	return r == 0x09 || r == 0x0A || r == 0x0D ||
		r >= 0x20 && r <= 0xD7FF ||
		r >= 0xE000 && r <= 0xFFFD ||
		r >= 0x10000 && r <= 0x10FFFF
}

// yamlString writes s as a YAML double-quoted scalar. A JSON string is one,
// and JSON's escaping covers every character, so no value can start a new
// key or document.
func yamlString(s string) (string, error) {
	if !utf8.ValidString(s) {
		return "", fmt.Errorf("%w: %q is not valid UTF-8", ErrInvalidValue, s)
	}
	b, err := json.Marshal(s)
	if err != nil {
		return "", err
	}
	return string(b), nil
}
