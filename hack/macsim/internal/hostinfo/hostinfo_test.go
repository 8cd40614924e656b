package hostinfo

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCommands(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "host.json")
	os.WriteFile(cfgPath, []byte(`{"name":"mac-07","productVersion":"14.6","cpus":12,"memoryBytes":34359738368}`), 0o644)
	c, err := Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	def, err := Load(filepath.Join(dir, "absent.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		c      Config
		f      func(Config, []string, io.Writer, io.Writer) int
		args   []string
		code   int
		stdout string
	}{
		{"sw_vers", def, SwVers, nil, 0, "ProductName:\t\tmacOS\nProductVersion:\t\t15.3\nBuildVersion:\t\t24D60\n"},
		{"sw_vers -productVersion", c, SwVers, []string{"-productVersion"}, 0, "14.6\n"},
		{"sw_vers -buildVersion", c, SwVers, []string{"-buildVersion"}, 0, "23G80\n"},
		{"sw_vers bad flag", c, SwVers, []string{"-x"}, 1, ""},
		{"uname", c, Uname, nil, 0, "Darwin\n"},
		{"uname -m", c, Uname, []string{"-m"}, 0, "arm64\n"},
		{"uname -sr", c, Uname, []string{"-sr"}, 0, "Darwin 23.6.0\n"},
		{"uname -r 15.3", def, Uname, []string{"-r"}, 0, "24.3.0\n"},
		{"uname -p", c, Uname, []string{"-p"}, 0, "arm\n"},
		{"uname bad", c, Uname, []string{"-z"}, 1, ""},
		{"sysctl -n hw.ncpu", c, Sysctl, []string{"-n", "hw.ncpu"}, 0, "12\n"},
		{"sysctl hw.memsize", c, Sysctl, []string{"hw.memsize"}, 0, "hw.memsize: 34359738368\n"},
		{"sysctl brand", def, Sysctl, []string{"-n", "machdep.cpu.brand_string"}, 0, "Apple M2 Pro\n"},
		{"sysctl hv", def, Sysctl, []string{"kern.hv_support", "kern.hv_vmm_present"}, 0, "kern.hv_support: 1\nkern.hv_vmm_present: 0\n"},
		{"sysctl prefix", def, Sysctl, []string{"hw.perflevel0"}, 0, "hw.perflevel0.physicalcpu: 6\n"},
		{"sysctl unknown", def, Sysctl, []string{"vm.nope"}, 1, ""},
		{"scutil HostName", def, Scutil, []string{"--get", "HostName"}, 1, "HostName: not set\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr strings.Builder
			code := tc.f(tc.c, tc.args, &stdout, &stderr)
			if code != tc.code || (tc.stdout != "" || code == 0) && stdout.String() != tc.stdout {
				t.Fatalf("got %d %q (stderr %q), want %d %q", code, stdout.String(), stderr.String(), tc.code, tc.stdout)
			}
			if code != 0 && tc.stdout == "" && stderr.Len() == 0 {
				t.Fatal("a failure must say why on stderr")
			}
		})
	}
}

func TestBuildFor(t *testing.T) {
	t.Parallel()
	for v, want := range map[string]string{"15.3": "24D60", "15.3.1": "24D70", "16.2": "25C102", "26.1": "25B101"} {
		if got := BuildFor(v); got != want {
			t.Errorf("BuildFor(%s) = %s, want %s", v, got, want)
		}
	}
}
