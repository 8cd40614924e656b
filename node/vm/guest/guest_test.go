package guest

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

func TestQuote(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"":            "''",
		"ls":          "ls",
		"/tmp":        "/tmp",
		"-la":         "-la",
		"a,c:d@e%f+g": "a,c:d@e%f+g",
		"FOO=bar":     "'FOO=bar'",
		"=ls":         "'=ls'",
		"a b":         "'a b'",
		"it's":        `'it'\''s'`,
		"$HOME":       "'$HOME'",
		"*":           "'*'",
		"new\nline":   "'new\nline'",
		"é":           "'é'",
	} {
		if got := Quote(in); got != want {
			t.Errorf("Quote(%q) = %s, want %s", in, got, want)
		}
	}
}

// TestJoinThroughShell: /bin/sh gets back exactly the argv Join quoted.
func TestJoinThroughShell(t *testing.T) {
	t.Parallel()
	argv := []string{"", "plain", "two words", "it's", `"double"`, "$HOME", "`id`", "$(id)", "*", "~", "a\\b",
		"new\nline", "tab\there", "semi;colon", "amp&", "pipe|", "{brace}", "#hash", "!bang", "'", "''", "é ü"}
	out, err := exec.Command("/bin/sh", "-c", `printf '%s\0' `+Join(argv)).Output()
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00")
	if strings.Join(got, "|") != strings.Join(argv, "|") || len(got) != len(argv) {
		t.Errorf("shell saw %q\nwant      %q", got, argv)
	}
}

// TestJoinAssignmentIsACommand: an argv[0] with '=' runs as a command
// named that, not as a variable assignment.
func TestJoinAssignmentIsACommand(t *testing.T) {
	t.Parallel()
	err := exec.Command("/bin/sh", "-c", Join([]string{"FOO=bar", "true"})).Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 127 {
		t.Errorf("sh -c %s = %v, want command not found (127)", Join([]string{"FOO=bar", "true"}), err)
	}
}

func FuzzJoin(f *testing.F) {
	f.Add("a b", "it's", "$x")
	f.Fuzz(func(t *testing.T, a, b, c string) {
		argv := []string{a, b, c}
		for _, s := range argv {
			if strings.ContainsRune(s, 0) {
				return // not representable in argv
			}
		}
		out, err := exec.Command("/bin/sh", "-c", `printf '%s\0' `+Join(argv)).Output()
		if err != nil {
			t.Fatal(err)
		}
		if want := a + "\x00" + b + "\x00" + c + "\x00"; string(out) != want {
			t.Fatalf("shell saw %q, want %q", out, want)
		}
	})
}

func TestPinCallback(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "vm", "host_key")
	key := func() ssh.PublicKey {
		pub, _, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		k, _ := ssh.NewPublicKey(pub)
		return k
	}
	a, b := key(), key()
	cb := pinCallback(path)
	if err := cb("guest", nil, a); err != nil {
		t.Fatalf("first contact: %v", err)
	}
	if pinned, err := PinnedHostKey(path); err != nil || !bytes.Equal(pinned.Marshal(), a.Marshal()) {
		t.Fatalf("pin = %v, %v", pinned, err)
	}
	if err := cb("guest", nil, a); err != nil {
		t.Errorf("same key again: %v", err)
	}
	if err := cb("guest", nil, b); !errors.Is(err, ErrHostKeyMismatch) {
		t.Errorf("other key: %v, want ErrHostKeyMismatch", err)
	}
	if err := os.WriteFile(path, []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := cb("guest", nil, a); err == nil || errors.Is(err, ErrHostKeyMismatch) {
		t.Errorf("corrupt pin: %v, want a read error", err)
	}
}

func TestExitCode(t *testing.T) {
	t.Parallel()
	if code, err := exitCode("g", nil); code != 0 || err != nil {
		t.Errorf("nil: %d %v", code, err)
	}
	if code, err := exitCode("g", errors.New("boom")); code != -1 || err == nil {
		t.Errorf("transport error: %d %v", code, err)
	}
	for name, want := range map[string]int{"KILL": 9, "TERM": 15, "INT": 2} {
		if got := signalNumber(name); got != want {
			t.Errorf("signalNumber(%s) = %d, want %d", name, got, want)
		}
	}
}

func TestDialNeedsConfig(t *testing.T) {
	t.Parallel()
	if _, err := Dial(t.Context(), Config{Addr: "127.0.0.1:1", Password: "x"}); err == nil {
		t.Error("Dial without a pin file was accepted")
	}
	if _, err := Dial(t.Context(), Config{Addr: "127.0.0.1:1", HostKeyPath: "/tmp/x"}); err == nil {
		t.Error("Dial without credentials was accepted")
	}
}
