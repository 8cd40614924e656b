package main

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestDispatch(t *testing.T) {
	t.Setenv("MACSIM_HOST_CONFIG", filepath.Join(t.TempDir(), "host.json"))
	for _, tc := range []struct {
		argv   []string
		code   int
		stdout string
	}{
		{[]string{"/usr/bin/sw_vers", "-productVersion"}, 0, "15.3\n"},
		{[]string{"macsim", "uname", "-m"}, 0, "arm64\n"},
		{[]string{"/usr/sbin/sysctl", "-n", "kern.hv_support"}, 0, "1\n"},
		{[]string{"macsim"}, 64, ""},
		{[]string{"/usr/bin/frob"}, 64, ""},
	} {
		var stdout, stderr strings.Builder
		if code := run(tc.argv, &stdout, &stderr); code != tc.code || stdout.String() != tc.stdout {
			t.Errorf("%v: %d %q (stderr %q), want %d %q", tc.argv, code, stdout.String(), stderr.String(), tc.code, tc.stdout)
		}
	}
	for name, dir := range Commands {
		if !filepath.IsAbs(dir) || name == "" {
			t.Errorf("Commands[%q] = %q", name, dir)
		}
	}
}
