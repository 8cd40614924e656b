package inventory

import (
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/vzfleet/vzfleet/inventory/v1alpha1"
)

func TestTaintString(t *testing.T) {
	cases := []struct {
		t    Taint
		want string
	}{
		{Taint{Key: "dedicated", Value: "ci", Effect: NoSchedule}, "dedicated=ci:NoSchedule"},
		{Taint{Key: "vzfleet.dev/macos", Effect: NoExecute}, "vzfleet.dev/macos:NoExecute"},
	}
	for _, c := range cases {
		if got := c.t.String(); got != c.want {
			t.Errorf("%#v.String() = %q, want %q", c.t, got, c.want)
		}
		var back v1alpha1.Taint
		if err := back.UnmarshalText([]byte(c.want)); err != nil || back.Key != c.t.Key || back.Value != c.t.Value || back.Effect != string(c.t.Effect) {
			t.Errorf("round trip of %q: %#v, %v", c.want, back, err)
		}
	}
}

func TestLogLevelSlog(t *testing.T) {
	for l, want := range map[LogLevel]slog.Level{LogDebug: slog.LevelDebug, LogInfo: slog.LevelInfo, LogWarn: slog.LevelWarn, LogError: slog.LevelError} {
		if got := l.Slog(); got != want {
			t.Errorf("%s.Slog() = %v, want %v", l, got, want)
		}
	}
}

func TestSecretRefRead(t *testing.T) {
	env := func(k string) (string, bool) {
		if k == "SET" {
			return "value", true
		}
		return "", false
	}
	if b, err := (SecretRef{Env: "SET"}).Read(env); err != nil || string(b) != "value" {
		t.Errorf("env: %q, %v", b, err)
	}
	if _, err := (SecretRef{Env: "UNSET"}).Read(env); err == nil || !strings.Contains(err.Error(), "UNSET: it is not set") {
		t.Errorf("unset env: %v", err)
	}
	if _, err := (SecretRef{File: "/nonexistent/secret"}).Read(env); err == nil {
		t.Error("missing file: no error")
	}
	if got := (SecretRef{Env: "X"}).String(); got != "$X" {
		t.Errorf("String() = %q", got)
	}
}

// TestMergeLeavesInputsAlone: merging the defaults into one host must not
// leak into the defaults seen by the next host.
func TestMergeLeavesInputsAlone(t *testing.T) {
	def := &v1alpha1.HostSpec{Node: &v1alpha1.Node{Labels: map[string]string{"a": "1"}}}
	host := &v1alpha1.HostSpec{Node: &v1alpha1.Node{Labels: map[string]string{"b": "2"}}}
	out, origins := mergeSpec(host, "hosts[0]", def, "defaults")
	out.Node.Labels["c"] = "3"
	v1alpha1.SetDefaultsHost("h", &out)
	if len(def.Node.Labels) != 1 || len(host.Node.Labels) != 1 || def.Node.MaxVMs != nil || def.SSH != nil {
		t.Errorf("inputs changed: defaults %+v, host %+v", def.Node, host.Node)
	}
	want := map[string]string{
		"node": "hosts[0].node", "node.labels": "hosts[0].node.labels",
		"node.labels[a]": "defaults.node.labels[a]", "node.labels[b]": "hosts[0].node.labels[b]",
	}
	if !reflect.DeepEqual(origins, want) {
		t.Errorf("origins = %v, want %v", origins, want)
	}
}

// TestValidateBuiltInCode: an Inventory made in code (no file positions)
// validates with plain field paths.
func TestValidateBuiltInCode(t *testing.T) {
	inv := &Inventory{
		Hosts: []Host{{
			Name:     "h",
			SSH:      SSH{Address: "a", Port: 0, User: "u", Agent: true, KnownHostsFile: "/k", ConnectTimeout: time.Second},
			Node:     Node{Name: "h", MaxVMs: 2, Driver: DriverSim, LogLevel: LogInfo},
			Cluster:  Cluster{NodeCredentials: NodeCredentials{CSR: true}},
			GuestSSH: GuestSSH{User: "admin", Password: &SecretRef{Env: "P"}},
			Paths:    Paths{Binary: "/b", LaunchdLabel: "l", Plist: "/l.plist", ConfigDir: "/c", StateDir: "/s", CacheDir: "/d", Log: "/log"},
		}},
		Rollout: Rollout{Concurrency: 1, MaxUnavailable: IntOrPercent{Value: 1}, ReadyTimeout: time.Minute},
	}
	err := inv.Validate()
	if err == nil || err.Error() != "hosts[0].ssh.port: port 0 is out of range; use 1 to 65535 (SSH is usually 22)" {
		t.Fatalf("got %v", err)
	}
	inv.Hosts[0].SSH.Port = 22
	if err := inv.Validate(); err != nil {
		t.Fatal(err)
	}
}
