package node

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseDuration(t *testing.T) {
	cases := []struct {
		in   string
		want time.Duration
		err  bool
	}{
		{"", 0, false},
		{"60", time.Minute, false},
		{"90s", 90 * time.Second, false},
		{"2m", 2 * time.Minute, false},
		{"-5", 0, true},
		{"soon", 0, true},
	}
	for _, c := range cases {
		got, err := ParseDuration(c.in)
		if (err != nil) != c.err || got.D() != c.want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v, error %v", c.in, got, err, c.want, c.err)
		}
	}
}

func TestConfigFileEnvAndValidation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "vz-node.yaml")
	if err := os.WriteFile(path, []byte("nodeName: mac-7\nmaxVMs: 1\nstartupTimeout: 45\nreserveMemory: 1Gi\ndockerHost: unix:///var/run/docker.sock\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfigFile(path, DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	if cfg.NodeName != "mac-7" || cfg.MaxVMs != 1 || cfg.StartupTimeout.D() != 45*time.Second || cfg.ReserveMemory.Value() != 1<<30 || cfg.DockerHost != "unix:///var/run/docker.sock" {
		t.Fatalf("config file not applied: %+v", cfg)
	}
	env := map[string]string{
		EnvPodIP: "10.1.2.3", EnvSSHUser: "admin", EnvSSHPassword: "secret", EnvCACert: "/ca.pem",
		EnvCert: "/c.pem", EnvKey: "/k.pem", EnvBridge: "en0", EnvOTLPInsecure: "true",
	}
	if err := ApplyEnv(&cfg, func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	if cfg.InternalIP != "10.1.2.3" || cfg.SSHPassword != "secret" || cfg.ClientCAPath != "/ca.pem" || cfg.BridgeInterface != "en0" || !cfg.OTLPInsecure {
		t.Fatalf("environment not applied: %+v", cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("valid config rejected: %v", err)
	}

	bad := cfg
	bad.MaxVMs, bad.LogLevel, bad.InternalIP, bad.KeyPath, bad.SSHPasswordFile = 0, "loud", "not-an-ip", "", "/pw"
	bad.DockerHost, bad.SandboxImage = "unix:///var/run/docker.sock", " "
	err = bad.Validate()
	for _, want := range []string{"--max-vms", "--log-level", "not an IP", "must be set together", "VZ_SSH_PASSWORD and VZ_SSH_PASSWORD_FILE are both set", "--sandbox-image is empty"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate error %v does not mention %q", err, want)
		}
	}

	if err := os.WriteFile(path, []byte("nodName: typo\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadConfigFile(path, DefaultConfig()); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Fatalf("unknown key not reported with its line: %v", err)
	}
}
