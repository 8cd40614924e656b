package plutil

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPlutil(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	good := filepath.Join(dir, "good.plist")
	bad := filepath.Join(dir, "bad.plist")
	os.WriteFile(good, []byte(`<?xml version="1.0" encoding="UTF-8"?>
<plist version="1.0"><dict>
<key>Label</key><string>dev.vzfleet.vz-node</string>
<key>ProgramArguments</key><array><string>/usr/local/bin/vz-node</string><string>--v</string></array>
<key>KeepAlive</key><true/>
</dict></plist>`), 0o644)
	os.WriteFile(bad, []byte("<plist>\n<dict>\n<key>Label</key>\n</dict>\n</plist>\n"), 0o644)
	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		stdout string
	}{
		{"lint good", []string{"-lint", good}, 0, good + ": OK\n"},
		{"lint bad", []string{"-lint", bad}, 1, bad + `: Key "Label" has no value on line 4` + "\n"},
		{"lint both", []string{"-lint", good, bad}, 1, good + ": OK\n" + bad + `: Key "Label" has no value on line 4` + "\n"},
		{"lint missing", []string{"-lint", filepath.Join(dir, "nope")}, 1, filepath.Join(dir, "nope") + ": file does not exist or is not readable or is not a regular file (Error Domain=NSCocoaErrorDomain Code=260)\n"},
		{"extract string", []string{"-extract", "Label", "raw", "-o", "-", good}, 0, "dev.vzfleet.vz-node\n"},
		{"extract array item", []string{"-extract", "ProgramArguments.1", "raw", "-o", "-", good}, 0, "--v\n"},
		{"extract bool", []string{"-extract", "KeepAlive", "raw", "-o", "-", good}, 0, "true\n"},
		{"extract missing", []string{"-extract", "Nope", "raw", "-o", "-", good}, 1, ""},
		{"print", []string{"-p", good}, 0, "{\n  \"KeepAlive\" => true\n  \"Label\" => \"dev.vzfleet.vz-node\"\n  \"ProgramArguments\" => [\n    0 => \"/usr/local/bin/vz-node\"\n    1 => \"--v\"\n  ]\n}\n"},
		{"no command", nil, 1, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr strings.Builder
			code := Main(tc.args, &stdout, &stderr)
			if code != tc.code || stdout.String() != tc.stdout {
				t.Fatalf("got %d %q (stderr %q), want %d %q", code, stdout.String(), stderr.String(), tc.code, tc.stdout)
			}
		})
	}
}
