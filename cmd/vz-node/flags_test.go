package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/vzfleet/vzfleet/node"
)

// Flags beat the environment, which beats the config file.
func TestConfigPrecedence(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cfg.yaml")
	if err := os.WriteFile(path, []byte("nodeName: from-file\nmaxVMs: 1\nlogLevel: warn\ninternalIP: 10.0.0.1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv(node.EnvPodIP, "10.0.0.2")
	cfg := node.DefaultConfig()
	fs := pflag.NewFlagSet("vz-node", pflag.ContinueOnError)
	bindFlags(fs, &cfg)
	if err := fs.Parse([]string{"--nodename", "from-flag", "--startup-timeout", "30", "--full-resync-period", "2m", "--disable-taint"}); err != nil {
		t.Fatal(err)
	}
	got, err := loadConfig(fs, path)
	if err != nil {
		t.Fatal(err)
	}
	if got.NodeName != "from-flag" || got.MaxVMs != 1 || got.LogLevel != "warn" || got.InternalIP != "10.0.0.2" ||
		got.StartupTimeout.D() != 30*time.Second || got.FullResyncPeriod.D() != 2*time.Minute || !got.DisableTaint {
		t.Fatalf("precedence wrong: %+v", got)
	}
}
