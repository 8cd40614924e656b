package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// --startup-timeout bounds the wait for an API server that never answers.
func TestRunHonoursStartupTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close() // accept and stay silent
		}
	}()
	dir := t.TempDir()
	kubeconfig := filepath.Join(dir, "kubeconfig")
	kc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://%s", insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`, ln.Addr())
	if err := os.WriteFile(kubeconfig, []byte(kc), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.NodeName, cfg.Kubeconfig, cfg.Driver = "mac-timeout", kubeconfig, "fake"
	cfg.CacheDir, cfg.StateDir, cfg.LeasesPath = filepath.Join(dir, "cache"), filepath.Join(dir, "state"), filepath.Join(dir, "leases")
	cfg.ListenAddress, cfg.NoVerifyClients, cfg.InternalIP = "127.0.0.1:0", true, "127.0.0.1"
	cfg.StartupTimeout = Duration(time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start := time.Now()
	err = Run(ctx, cfg, discardLog())
	if !errors.Is(err, ErrStartupTimeout) {
		t.Fatalf("Run returned %v, want ErrStartupTimeout", err)
	}
	if took := time.Since(start); took > 15*time.Second {
		t.Fatalf("Run gave up after %s with a 1s startup timeout", took)
	}
}
