package inventory

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/")

// golden compares got with the golden file, or rewrites it with -update.
func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./inventory -update to create it)", err)
	}
	if string(got) != string(want) {
		t.Errorf("%s differs (rerun with -update if the change is intended)\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

func testOptions() []Option {
	return []Option{WithHomeDir("/home/op"), WithBaseDir("/srv/fleet")}
}

// TestLoadValid loads every testdata/valid file and compares the effective
// hosts (defaults merged and applied) with its .golden.json.
func TestLoadValid(t *testing.T) {
	files, _ := filepath.Glob("testdata/valid/*.yaml")
	if len(files) == 0 {
		t.Fatal("no testdata/valid/*.yaml")
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			t.Parallel()
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			inv, err := Parse(data, file, testOptions()...)
			if err != nil {
				t.Fatalf("want valid, got:\n%v", err)
			}
			if err := inv.Validate(); err != nil {
				t.Fatalf("Validate after Load: %v", err)
			}
			got, err := json.MarshalIndent(struct {
				Hosts   []Host
				Rollout Rollout
			}{inv.Hosts, inv.Rollout}, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			golden(t, strings.TrimSuffix(file, ".yaml")+".golden.json", append(got, '\n'))
		})
	}
}

// Secrets written where references belong; the error must never repeat them.
var leakRE = regexp.MustCompile(`(?i)hunter2|sekret|BEGIN OPENSSH`)

// TestLoadInvalid loads every testdata/invalid file and compares the full
// error text (file:line:col: path: message per problem) with its .err file.
func TestLoadInvalid(t *testing.T) {
	files, _ := filepath.Glob("testdata/invalid/*.yaml")
	if len(files) < 20 {
		t.Fatalf("only %d testdata/invalid/*.yaml", len(files))
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			inv, err := Load(file, WithHomeDir("/home/op"))
			if err == nil {
				t.Fatalf("want an error, loaded %d hosts", len(inv.Hosts))
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("took %s; bad input must fail fast", d)
			}
			for _, e := range Errors(err) {
				if e.File != file || e.Message == "" {
					t.Errorf("error without file or message: %#v", e)
				}
			}
			if leakRE.MatchString(err.Error()) {
				t.Errorf("error echoes a secret:\n%v", err)
			}
			golden(t, strings.TrimSuffix(file, ".yaml")+".err", []byte(err.Error()+"\n"))
		})
	}
}

func TestExampleInventoryLoads(t *testing.T) {
	inv, err := Load("../examples/inventory.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(inv.Hosts) != 3 {
		t.Fatalf("want the 3 example hosts, got %d", len(inv.Hosts))
	}
	dir, _ := filepath.Abs("../examples")
	if got, want := inv.Hosts[0].GuestSSH.PrivateKey.File, filepath.Join(dir, "secrets/guest_ed25519"); got != want {
		t.Errorf("relative secret path resolved to %q, want %q (against the inventory's directory)", got, want)
	}
}

func TestLoadLimits(t *testing.T) {
	big := make([]byte, MaxFileSize+1)
	for i := range big {
		big[i] = 'a'
	}
	path := filepath.Join(t.TempDir(), "big.yaml")
	if err := os.WriteFile(path, big, 0o600); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err := Load(path)
	if err == nil || !strings.Contains(err.Error(), "larger than 1024 KiB") {
		t.Fatalf("want a size error, got %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("size check took %s", d)
	}

	header := "apiVersion: vzfleet.dev/v1alpha1\nkind: Inventory\n"
	for name, data := range map[string][]byte{
		"binary":          {0x7f, 'E', 'L', 'F', 0, 1, 2},
		"latin1":          []byte("name: caf\xe9"),
		"deep flow":       []byte(strings.Repeat("[", 20000)),
		"deep block":      []byte(header + "hosts:\n" + strings.Repeat("- ", 20000) + "x\n"),
		"1 MiB of fields": []byte(header + strings.Repeat("unknown: field\n", (MaxFileSize-100)/15)),
		"8000 bad hosts":  []byte(header + "hosts:\n" + strings.Repeat("- {name: h, ssh: {address: a}}\n", 8000)),
	} {
		start := time.Now()
		_, err := Parse(data, name)
		if err == nil {
			t.Errorf("%s: want an error", name)
		}
		if n := len(Errors(err)); n > 51 {
			t.Errorf("%s: %d errors; the list must be capped", name, n)
		}
		// Generous: the point is linear time, and CI machines are shared.
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("%s: took %s; garbage must fail fast", name, d)
		}
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.yaml")); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("missing file: %v", err)
	}
}

// TestErrorPositions checks the positions directly, independent of goldens.
func TestErrorPositions(t *testing.T) {
	cases := []struct {
		name, yaml string
		want       []string // each must appear as a line prefix of the error
	}{
		{
			name: "unknown field",
			yaml: "apiVersion: vzfleet.dev/v1alpha1\nkind: Inventory\nhosts:\n  - name: a\n    ssh:\n      adress: x\n",
			want: []string{`t.yaml:6:7: hosts[0].ssh.adress: unknown field "adress"; did you mean "address"?`},
		},
		{
			name: "value from defaults reported once at defaults",
			yaml: "apiVersion: vzfleet.dev/v1alpha1\nkind: Inventory\ndefaults:\n  ssh: {user: u}\n  guestSSH: {password: {env: P}}\n  node: {maxVMs: 7}\nhosts:\n  - {name: a, ssh: {address: a}}\n  - {name: b, ssh: {address: b}}\n",
			want: []string{"t.yaml:6:18: defaults.node.maxVMs: 7 is out of range"},
		},
		{
			name: "required field at the host",
			yaml: "apiVersion: vzfleet.dev/v1alpha1\nkind: Inventory\ndefaults:\n  guestSSH: {password: {env: P}}\nhosts:\n  - name: a\n    ssh: {user: u}\n",
			want: []string{"t.yaml:7:10: hosts[0].ssh.address: required"},
		},
		{
			name: "map key path",
			yaml: "apiVersion: vzfleet.dev/v1alpha1\nkind: Inventory\ndefaults:\n  ssh: {user: u}\n  guestSSH: {password: {env: P}}\nhosts:\n  - name: a\n    ssh: {address: a}\n    node:\n      labels:\n        k8s.io/x: y\n",
			want: []string{"t.yaml:11:19: hosts[0].node.labels[k8s.io/x]: label \"k8s.io/x\" is in a Kubernetes-reserved namespace"},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse([]byte(c.yaml), "t.yaml", testOptions()...)
			if err == nil {
				t.Fatal("want an error")
			}
			lines := strings.Split(err.Error(), "\n")
			for _, w := range c.want {
				found := false
				for _, l := range lines {
					found = found || strings.HasPrefix(l, w)
				}
				if !found {
					t.Errorf("no line starts with\n  %s\ngot:\n%v", w, err)
				}
			}
			if c.name == "value from defaults reported once at defaults" && len(lines) != 1 {
				t.Errorf("want the defaults error once, got:\n%v", err)
			}
		})
	}
}

func TestExpandLocal(t *testing.T) {
	home := func() (string, error) { return "/home/op", nil }
	cases := []struct{ in, want, err string }{
		{"", "", ""},
		{"~", "/home/op", ""},
		{"~/.ssh/id", "/home/op/.ssh/id", ""},
		{"keys/id", "/srv/fleet/keys/id", ""},
		{"../keys/id", "/srv/keys/id", ""},
		{"/etc/../abs", "/abs", ""},
		{"~bob/id", "", "~user paths are not supported"},
	}
	for _, c := range cases {
		got, err := expandLocal(c.in, "/srv/fleet", home)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("expandLocal(%q): want error %q, got %q, %v", c.in, c.err, got, err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("expandLocal(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
}
