package remote

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestSSHConfigLookup(t *testing.T) {
	t.Parallel()
	c, err := loadSSHConfig(filepath.Join("testdata", "ssh_config"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		alias string
		want  hostSettings
	}{
		{"mac-1", hostSettings{
			HostName: "mac-1.lab.example", Port: "2222", User: "admin",
			IdentityFiles:       []string{"~/.ssh/fleet_%r", "~/.ssh/id_shared"},
			IdentityAgent:       "~/.ssh/agent.sock",
			ProxyJump:           "ops@bastion.example:2200",
			UserKnownHostsFiles: []string{"/etc/ssh/fleet known_hosts", "~/.ssh/known_hosts_fleet"},
			ConnectTimeout:      "7", ServerAliveInterval: "30",
		}},
		{"MAC-9", hostSettings{
			HostName: "10.0.0.9", Port: "22", User: "fallback",
			IdentityFiles: []string{"~/.ssh/id_shared"}, IdentityAgent: "~/.ssh/agent.sock",
			ConnectTimeout: "7", ServerAliveInterval: "30",
		}},
		{"other", hostSettings{
			Port: "22", User: "fallback",
			IdentityFiles: []string{"~/.ssh/id_shared"}, IdentityAgent: "~/.ssh/agent.sock",
			ConnectTimeout: "7", ServerAliveInterval: "30",
		}},
	}
	for _, tt := range tests {
		if got := c.lookup(tt.alias); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("lookup(%s)\n got %+v\nwant %+v", tt.alias, got, tt.want)
		}
	}
}

func TestSSHConfigErrors(t *testing.T) {
	t.Parallel()
	tests := map[string]string{
		"Host\n":                   "cfg:1: Host needs at least one pattern",
		"Host a\n  HostName\n":     "cfg:2: hostname needs a value",
		"User \"unterminated\n":    "cfg:1: user: unterminated quote",
		"Include " + loopConfig(t): "nested more than 16 deep",
	}
	for input, want := range tests {
		_, err := parseSSHConfig(strings.NewReader(input), "cfg", t.TempDir())
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: want error containing %q, got %v", input, want, err)
		}
	}
}

// loopConfig writes a config that includes itself.
func loopConfig(t *testing.T) string {
	path := filepath.Join(t.TempDir(), "loop")
	if err := os.WriteFile(path, []byte("Include "+path+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestGlobMatch(t *testing.T) {
	t.Parallel()
	tests := []struct {
		pattern, s string
		want       bool
	}{
		{"*", "anything", true},
		{"mac-*", "mac-12", true},
		{"mac-?", "mac-12", false},
		{"mac-??", "mac-12", true},
		{"*.lab.*", "a.lab.example", true},
		{"*.lab", "a.lab.example", false},
		{"[a]", "[a]", true},
		{"a*b*c", "aXbYbZc", true},
		{"a*b*c", "aXbYbZ", false},
		{"MAC", "mac", true},
	}
	for _, tt := range tests {
		if got := globMatch(tt.pattern, tt.s); got != tt.want {
			t.Errorf("globMatch(%q, %q) = %v", tt.pattern, tt.s, got)
		}
	}
}

func TestParseJump(t *testing.T) {
	t.Parallel()
	tests := []struct {
		spec, user, host string
		port             int
		err              bool
	}{
		{"bastion", "", "bastion", 0, false},
		{"ops@bastion:2200", "ops", "bastion", 2200, false},
		{"ssh://ops@10.0.0.1:22", "ops", "10.0.0.1", 22, false},
		{"[::1]:2222", "", "::1", 2222, false},
		{"a@b@bastion", "a@b", "bastion", 0, false},
		{"bastion:99999", "", "", 0, true},
		{"", "", "", 0, true},
	}
	for _, tt := range tests {
		u, h, p, err := parseJump(tt.spec)
		if (err != nil) != tt.err || u != tt.user || h != tt.host || p != tt.port {
			t.Errorf("parseJump(%q) = %q %q %d %v", tt.spec, u, h, p, err)
		}
	}
}

func TestExpandTokens(t *testing.T) {
	t.Parallel()
	home, _ := os.UserHomeDir()
	got, err := expandTokens("~/.ssh/%h-%r-%p%%", "mac-1", "admin", "22")
	if want := home + "/.ssh/mac-1-admin-22%"; err != nil || got != want {
		t.Fatalf("got %q, %v; want %q", got, err, want)
	}
	if _, err := expandTokens("%C", "h", "u", "22"); err == nil {
		t.Fatal("unknown token accepted")
	}
}

func FuzzParseSSHConfig(f *testing.F) {
	seed, err := os.ReadFile(filepath.Join("testdata", "ssh_config"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(string(seed), "mac-1")
	f.Add("Host=a\nHostName=\"b c\" # comment\n", "a")
	f.Add("Host !*\n", "x")
	f.Add("Match host a\nUser b\n", "a")
	f.Fuzz(func(t *testing.T, config, alias string) {
		if strings.Contains(strings.ToLower(config), "include") {
			return // keep the fuzzer off the file system
		}
		c, err := parseSSHConfig(strings.NewReader(config), "fuzz", "")
		if err != nil {
			return
		}
		_ = c.lookup(alias)
	})
}

func TestResolve(t *testing.T) {
	t.Parallel()
	home, _ := os.UserHomeDir()
	target, jumps, err := resolve(Config{Address: "mac-1", SSHConfigFile: filepath.Join("testdata", "ssh_config")})
	if err != nil {
		t.Fatal(err)
	}
	want := hop{
		alias: "mac-1", hostname: "mac-1.lab.example", port: 2222, user: "admin",
		identities:     []string{home + "/.ssh/fleet_admin", home + "/.ssh/id_shared"},
		knownHosts:     []string{"/etc/ssh/fleet known_hosts", home + "/.ssh/known_hosts_fleet"},
		agentSock:      home + "/.ssh/agent.sock",
		connectTimeout: 7 * time.Second, aliveInterval: 30 * time.Second,
	}
	if !reflect.DeepEqual(target, want) {
		t.Errorf("target\n got %+v\nwant %+v", target, want)
	}
	if len(jumps) != 1 || jumps[0].addr() != "bastion.example:2200" || jumps[0].user != "ops" {
		t.Errorf("jumps = %+v", jumps)
	}

	// Explicit settings win over the file; "none" drops its jump host.
	target, jumps, err = resolve(Config{Address: "mac-1", Port: 22, User: "root", ProxyJump: "none",
		KnownHostsFiles: []string{"/kh"}, NoAgent: true, SSHConfigFile: filepath.Join("testdata", "ssh_config")})
	if err != nil {
		t.Fatal(err)
	}
	if target.port != 22 || target.user != "root" || len(jumps) != 0 || target.agentSock != "" ||
		!reflect.DeepEqual(target.knownHosts, []string{"/kh"}) {
		t.Errorf("explicit settings lost: %+v, jumps %+v", target, jumps)
	}
}
