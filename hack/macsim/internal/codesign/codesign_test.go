package codesign

import (
	"bytes"
	"crypto/sha256"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const entitlements = `<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
	<key>com.apple.security.virtualization</key>
	<true/>
	<key>com.apple.security.network.server</key>
	<true/>
</dict>
</plist>
`

func cs(args ...string) (int, string, string) {
	var stdout, stderr strings.Builder
	code := Main(args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func TestSignVerifyEntitlements(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		content []byte
		// appended reports whether signing changes the file's bytes.
		appended bool
	}{
		{"executable", append([]byte{0x7f, 'E', 'L', 'F'}, make([]byte, 4096)...), true},
		{"script", []byte("#!/bin/sh\necho hi\n"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			bin := filepath.Join(dir, "vz-node")
			ent := filepath.Join(dir, "ent.plist")
			os.WriteFile(bin, tc.content, 0o755)
			os.WriteFile(ent, []byte(entitlements), 0o644)

			code, _, stderr := cs("--verify", bin)
			if code != 1 || stderr != bin+": code object is not signed at all\n" {
				t.Fatalf("verify unsigned: %d %q", code, stderr)
			}
			if code, _, stderr := cs("-d", "--entitlements", "-", bin); code != 1 || !strings.Contains(stderr, "not signed at all") {
				t.Fatalf("display unsigned: %d %q", code, stderr)
			}
			before := sha256.Sum256(tc.content)
			if code, _, stderr := cs("--force", "--sign", "-", "--options", "runtime", "--entitlements", ent, bin); code != 0 {
				t.Fatalf("sign: %d %q", code, stderr)
			}
			after, _ := os.ReadFile(bin)
			if changed := sha256.Sum256(after) != before; changed != tc.appended {
				t.Fatalf("signing changed the file: %v, want %v", changed, tc.appended)
			}
			if code, _, stderr := cs("--verify", "--strict", "-v", bin); code != 0 || !strings.Contains(stderr, "valid on disk") {
				t.Fatalf("verify signed: %d %q", code, stderr)
			}
			code, stdout, stderr := cs("-d", "--entitlements", "-", "--xml", bin)
			if code != 0 || !strings.Contains(stdout, "<key>com.apple.security.virtualization</key>") || !strings.Contains(stderr, "Executable=") {
				t.Fatalf("entitlements xml: %d %q %q", code, stdout, stderr)
			}
			code, stdout, _ = cs("-d", "--entitlements", "-", bin)
			if code != 0 || !strings.Contains(stdout, "[Key] com.apple.security.virtualization\n\t[Value]\n\t\t[Bool] true") {
				t.Fatalf("entitlements: %d %q", code, stdout)
			}
			if code, stdout, _ = cs("-d", "--entitlements", ":-", bin); stdout != entitlements {
				t.Fatalf("raw entitlements: %d %q", code, stdout)
			}
			if code, _, stderr = cs("-dvvv", bin); code != 0 || !strings.Contains(stderr, "Signature=adhoc") || !strings.Contains(stderr, "flags=0x10002(adhoc,runtime)") {
				t.Fatalf("-dvvv: %d %q", code, stderr)
			}
			if code, _, stderr = cs("-s", "-", bin); code != 1 || !strings.Contains(stderr, "is already signed") {
				t.Fatalf("re-sign without --force: %d %q", code, stderr)
			}
			// A copy keeps an embedded signature; a rename keeps both kinds.
			moved := filepath.Join(dir, "moved")
			os.Rename(bin, moved)
			if code, _, stderr = cs("-v", moved); code != 0 {
				t.Fatalf("verify after rename: %d %q", code, stderr)
			}
			// Changing the code breaks the signature.
			f, _ := os.OpenFile(moved, os.O_WRONLY, 0)
			f.WriteAt([]byte("X"), 6)
			f.Close()
			if code, _, stderr = cs("--verify", moved); code != 1 || !strings.Contains(stderr, "invalid signature (code or signature have been modified)") {
				t.Fatalf("verify modified: %d %q", code, stderr)
			}
			// codesign -d displays a signature without validating it.
			if code, stdout, stderr := cs("-d", "--entitlements", "-", "--xml", moved); code != 0 || !strings.Contains(stdout, "com.apple.security.virtualization") {
				t.Fatalf("display modified: %d %q %q", code, stdout, stderr)
			}
			// Re-signing a modified file covers the new code.
			if code, _, stderr := cs("-f", "-s", "-", moved); code != 0 {
				t.Fatalf("re-sign modified: %d %q", code, stderr)
			}
			if code, _, stderr := cs("-v", moved); code != 0 {
				t.Fatalf("verify re-signed: %d %q", code, stderr)
			}
			if code, _, _ = cs("--remove-signature", moved); code != 0 {
				t.Fatal("remove-signature failed")
			}
			if code, _, stderr = cs("--verify", moved); code != 1 || !strings.Contains(stderr, "not signed at all") {
				t.Fatalf("verify after removal: %d %q", code, stderr)
			}
		})
	}
}

func TestSignErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	os.WriteFile(bin, []byte{0x7f, 'E', 'L', 'F', 1}, 0o755)
	bad := filepath.Join(dir, "bad.plist")
	os.WriteFile(bad, []byte("<plist><dict><key>a</key></dict></plist>"), 0o644)
	for _, tc := range []struct {
		name   string
		args   []string
		stderr string
	}{
		{"identity not in keychain", []string{"-s", "Developer ID Application: X", bin}, "could not be found in the keychain"},
		{"bad entitlements", []string{"-f", "-s", "-", "--entitlements", bad, bin}, "Failed to parse entitlements"},
		{"missing file", []string{"--verify", filepath.Join(dir, "nope")}, "No such file or directory"},
		{"no operation", []string{bin}, "Usage: codesign"},
		{"unknown option", []string{"--frob", bin}, "unrecognized option"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := cs(tc.args...)
			if code == 0 || !strings.Contains(stderr, tc.stderr) {
				t.Fatalf("%v: %d %q, want failure containing %q", tc.args, code, stderr, tc.stderr)
			}
		})
	}
}

func FuzzRead(f *testing.F) {
	f.Add([]byte("\x7fELF plain"))
	f.Add(append([]byte(`{"identifier":"x","identity":"-","codeSHA256":""}`), append([]byte{0, 0, 0, 0, 0, 0, 0, 48}, trailerMagic...)...))
	f.Add(append([]byte{0, 0, 0, 0, 0, 0, 0xff, 0xff}, trailerMagic...))
	f.Fuzz(func(t *testing.T, data []byte) {
		code, payload, err := splitTrailer(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			t.Fatal(err)
		}
		if code < 0 || code+int64(len(payload)) > int64(len(data)) {
			t.Fatalf("split %d bytes into %d + %d", len(data), code, len(payload))
		}
		if payload == nil && code != int64(len(data)) {
			t.Fatal("no trailer, yet the code was cut")
		}
		if payload != nil && !bytes.Equal(payload, data[code:code+int64(len(payload))]) {
			t.Fatal("the payload is not the bytes after the code")
		}
	})
}
