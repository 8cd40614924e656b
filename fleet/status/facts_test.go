package status

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/vzfleet/vzfleet/fleet/remote"
	"github.com/vzfleet/vzfleet/inventory"
)

func TestParseFacts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, out string
		want      Facts
		err       string
	}{
		{
			name: "running job",
			out:  "macos 15.1\nfree_kb 1048576\nversion {\"version\":\"0.4.0\",\"commit\":\"abc\"}\nlaunchd_rc 0\nlaunchd_state running\nlaunchd_pid 412\n",
			want: Facts{MacOS: "15.1", FreeDiskBytes: 1 << 30, AgentVersion: "0.4.0", JobLoaded: true, JobState: "running", JobPID: 412},
		},
		{
			name: "nothing installed",
			out:  "macos 14.6\nfree_kb \nlaunchd_rc 113\n",
			want: Facts{MacOS: "14.6", FreeDiskBytes: -1},
		},
		{
			name: "garbage version and disk",
			out:  "macos 15.0\nfree_kb lots\nversion not json\nlaunchd_rc 0\n",
			want: Facts{MacOS: "15.0", FreeDiskBytes: -1, JobLoaded: true},
		},
		{name: "no launchctl line", out: "macos 15.1\n", err: "no launchctl status"},
		{name: "bad launchctl status", out: "launchd_rc x\n", err: "bad launchctl exit status"},
	}
	for _, tt := range tests {
		got, err := ParseFacts(tt.out)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%s: error = %v, want %q", tt.name, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("%s: ParseFacts = %+v, %v; want %+v", tt.name, got, err, tt.want)
		}
	}
}

// envHost runs every command with one more environment entry.
type envHost struct {
	remote.Host
	env string
}

func (h envHost) Run(ctx context.Context, cmd remote.Cmd) (remote.Result, error) {
	cmd.Env = append(cmd.Env, h.env)
	return h.Host.Run(ctx, cmd)
}

func writeExec(path, content string) error { return os.WriteFile(path, []byte(content), 0o755) }

func FuzzParseFacts(f *testing.F) {
	f.Add("macos 15.1\nfree_kb 1048576\nversion {\"version\":\"0.4.0\"}\nlaunchd_rc 0\nlaunchd_state running\nlaunchd_pid 412\n")
	f.Add("launchd_rc 113\n")
	f.Add("free_kb 99999999999999999999\nlaunchd_rc 0\n")
	f.Fuzz(func(t *testing.T, out string) {
		got, err := ParseFacts(out)
		if err == nil && got.FreeDiskBytes < -1 {
			t.Errorf("negative free disk %d from %q", got.FreeDiskBytes, out)
		}
	})
}

func TestLaunchdWords(t *testing.T) {
	t.Parallel()
	for want, f := range map[string]Facts{
		"not loaded":      {},
		"running (pid 7)": {JobLoaded: true, JobState: "running", JobPID: 7},
		"waiting":         {JobLoaded: true, JobState: "waiting"},
		"loaded":          {JobLoaded: true},
	} {
		if got := f.Launchd(); got != want {
			t.Errorf("%+v.Launchd() = %q, want %q", f, got, want)
		}
	}
}

// TestFactsScriptRuns runs the real script with stand-ins for the macOS
// commands on this machine's shell, through the local remote.Host.
func TestFactsScriptRuns(t *testing.T) {
	t.Parallel()
	bin := t.TempDir()
	stub := func(name, body string) {
		t.Helper()
		if err := writeExec(bin+"/"+name, "#!/bin/sh\n"+body+"\n"); err != nil {
			t.Fatal(err)
		}
	}
	stub("sw_vers", `echo 15.2`)
	stub("launchctl", "printf 'system/dev.vzfleet.vz-node = {\\n\\tstate = running\\n\\tpid = 99\\n}\\n'")
	stub("vz-node", `echo '{"version": "0.5.0"}'`)
	if _, err := exec.LookPath("df"); err != nil {
		t.Fatalf("df: %v", err)
	}
	h := host("local", "127.0.0.1", nil)
	h.Paths.Binary = bin + "/vz-node"
	h.Paths.CacheDir = t.TempDir() + "/not/yet/there"
	h.Paths.Log = bin + "/missing.log"
	g := &SSHGatherer{Dial: func(context.Context, inventory.Host) (remote.Host, error) {
		return envHost{remote.NewLocal(remote.LocalOptions{}), "PATH=" + bin + ":/usr/bin:/bin"}, nil
	}}
	defer g.Close()
	f, err := g.Gather(context.Background(), h)
	if err != nil {
		t.Fatal(err)
	}
	if f.MacOS != "15.2" || f.AgentVersion != "0.5.0" || !f.JobLoaded || f.JobPID != 99 || f.FreeDiskBytes <= 0 {
		t.Errorf("facts = %+v", f)
	}
	d, err := g.Detail(context.Background(), h)
	if err != nil || !strings.Contains(d.LaunchctlPrint, "pid = 99") || !strings.Contains(d.LogTail, "No such file") {
		t.Errorf("detail = %+v, %v", d, err)
	}
}
