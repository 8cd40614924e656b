package node

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadPasswordFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		name, content string
		mode          os.FileMode
		want, err     string
	}{
		{name: "plain", content: "s3cret", mode: 0o600, want: "s3cret"},
		{name: "newline", content: "pa ss\nignored\n", mode: 0o600, want: "pa ss"},
		{name: "crlf", content: "pw\r\n", mode: 0o400, want: "pw"},
		{name: "group-readable", content: "pw\n", mode: 0o640, err: "chmod 600"},
		{name: "empty", content: "\n", mode: 0o600, err: "is empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := readPasswordFile(write(tc.name, tc.content, tc.mode))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want it to mention %q", err, tc.err)
				}
				if strings.Contains(err.Error(), strings.TrimSpace(tc.content)) && strings.TrimSpace(tc.content) != "" {
					t.Fatalf("error %q reveals the password", err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
	if _, err := readPasswordFile(filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), EnvSSHPassFile) {
		t.Fatalf("missing file: %v", err)
	}
}

func TestGuestClientUsesPasswordFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(p, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	g, err := newGuestClient(Config{SSHUser: "admin", SSHPasswordFile: p})
	if err != nil {
		t.Fatal(err)
	}
	if l := g.login(); l.User != "admin" || l.Password != "from-file" {
		t.Fatalf("login %+v", l)
	}
}
