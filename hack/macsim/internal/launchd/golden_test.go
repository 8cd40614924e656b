package launchd

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// TestPrintGolden pins the layout of `launchctl print` and `launchctl list`
// for a loaded job that has not run.
func TestPrintGolden(t *testing.T) {
	d, dir := newDaemon(t)
	p := writeJob(t, dir, "dev.vzfleet.vz-node", "exit 0\n",
		`<key>EnvironmentVariables</key><dict><key>KUBECONFIG</key><string>/Library/Application Support/vzfleet/kubeconfig</string></dict>
	<key>ThrottleInterval</key><integer>5</integer>`)
	expect(t, run(d, "bootstrap", "system", p), 0, "")
	var got strings.Builder
	for _, args := range [][]string{{"print", "system/dev.vzfleet.vz-node"}, {"list"}, {"list", "dev.vzfleet.vz-node"}} {
		r := run(d, args...)
		got.WriteString("$ launchctl " + strings.Join(args, " ") + "\n" + r.Stdout)
	}
	out := strings.ReplaceAll(got.String(), dir, "$DIR")
	golden := filepath.Join("testdata", "print.golden")
	if *update {
		if err := os.WriteFile(golden, []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if out != string(want) {
		t.Fatalf("launchctl output changed (run with -update if intended):\n%s\n--- want ---\n%s", out, want)
	}
}

func TestLoadAtBoot(t *testing.T) {
	dir := t.TempDir()
	daemons := filepath.Join(dir, "LaunchDaemons")
	os.MkdirAll(daemons, 0o755)
	writeJob(t, daemons, "dev.test.boot", "exec sleep 300\n", `<key>RunAtLoad</key><true/>`)
	writeJob(t, daemons, "dev.test.off", "exec sleep 300\n", `<key>RunAtLoad</key><true/><key>Disabled</key><true/>`)
	d, err := New(Options{Socket: filepath.Join(dir, "l.sock"), LoadDirs: []string{daemons}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	go d.Serve()
	waitFor(t, "the boot-time job", 5*time.Second, func() bool { return alive(pidOf(t, d, "dev.test.boot")) })
	expect(t, run(d, "print", "system/dev.test.off"), ExitNoService, "Could not find service")
}

func FuzzParseJob(f *testing.F) {
	f.Add([]byte(`<plist><dict><key>Label</key><string>a</string><key>ProgramArguments</key><array><string>/bin/true</string></array><key>KeepAlive</key><dict><key>SuccessfulExit</key><false/></dict></dict></plist>`))
	f.Add([]byte(`<plist><dict><key>Label</key><string>a</string><key>Program</key><string>/bin/true</string><key>ThrottleInterval</key><integer>-1</integer></dict></plist>`))
	f.Add([]byte(`<plist><array/></plist>`))
	f.Fuzz(func(t *testing.T, data []byte) {
		j, err := ParseJob("fuzz.plist", data)
		if err != nil {
			return
		}
		if j.Label == "" || (j.Program == "" && len(j.ProgramArguments) == 0) {
			t.Fatalf("accepted a job without a label or program: %+v", j)
		}
		if j.ThrottleInterval < -1 || j.ExitTimeOut < -1 {
			t.Fatalf("negative interval accepted: %+v", j)
		}
	})
}
