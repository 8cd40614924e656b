package fleet

import (
	"bytes"
	"strings"
	"testing"
)

func testFiles() []File {
	return []File{
		{Kind: KindEntitlements, Path: "/cfg/ent.plist", Content: []byte("ent"), Mode: 0o644},
		{Kind: KindConfig, Path: "/cfg/vz-node.yaml", Content: []byte("a: 1\nb: 2\n"), Mode: 0o644, Restart: true},
		{Kind: KindKubeconfig, Path: "/cfg/kubeconfig", Content: []byte("TOPSECRET-TOKEN"), Mode: 0o600, Secret: true, Restart: true},
		{Kind: KindBinary, Path: "/bin/vz-node", Content: []byte("binary-v2"), Mode: 0o755, Sign: true, DependsOn: []string{"/cfg/ent.plist"}, Restart: true},
		{Kind: KindPlist, Path: "/ld/x.plist", Content: []byte("<plist/>"), Mode: 0o644},
	}
}

// installedFacts is a host where every file is as desired and the job runs.
func installedFacts(files []File) Facts {
	f := Facts{Hashes: map[string]string{}, State: installState{Files: map[string]installedFile{}}, Job: JobState{Loaded: true, State: "running", PID: 42}}
	for _, file := range files {
		sum := file.SHA256()
		if file.Sign {
			// codesign changed the bytes on the host.
			sum = sha256Hex(append([]byte("signed:"), file.Content...))
		}
		f.Hashes[file.Path] = sum
		f.State.Files[file.Path] = installedFile{Source: file.SHA256(), Installed: sum}
	}
	return f
}

func TestComputePlan(t *testing.T) {
	files := testFiles()
	cases := []struct {
		name        string
		files       func() []File
		facts       func(Facts) Facts
		wantChanges []FileKind
		wantService ServiceAction
		wantReason  string
	}{
		{name: "up to date (binary signed on the host)", wantService: ServiceNone},
		{
			name: "cold host",
			facts: func(Facts) Facts {
				return Facts{Hashes: map[string]string{}, State: installState{Files: map[string]installedFile{}}}
			},
			wantChanges: []FileKind{KindEntitlements, KindConfig, KindKubeconfig, KindBinary, KindPlist},
			wantService: ServiceReload,
		},
		{
			name:        "new binary only: kickstart",
			files:       func() []File { fs := testFiles(); fs[3].Content = []byte("binary-v3"); return fs },
			wantChanges: []FileKind{KindBinary},
			wantService: ServiceKickstart,
		},
		{
			name:        "config only: kickstart",
			files:       func() []File { fs := testFiles(); fs[1].Content = []byte("a: 1\nb: 3\n"); return fs },
			wantChanges: []FileKind{KindConfig},
			wantService: ServiceKickstart,
		},
		{
			name:        "plist changed: reload",
			files:       func() []File { fs := testFiles(); fs[4].Content = []byte("<plist>2</plist>"); return fs },
			wantChanges: []FileKind{KindPlist},
			wantService: ServiceReload,
		},
		{
			name:        "entitlements changed: binary re-signed",
			files:       func() []File { fs := testFiles(); fs[0].Content = []byte("ent+networking"); return fs },
			wantChanges: []FileKind{KindEntitlements, KindBinary},
			wantService: ServiceKickstart,
			wantReason:  "re-sign",
		},
		{
			name: "binary edited on the host: drift",
			facts: func(f Facts) Facts {
				f.Hashes["/bin/vz-node"] = sha256Hex([]byte("tampered"))
				return f
			},
			wantChanges: []FileKind{KindBinary},
			wantService: ServiceKickstart,
		},
		{
			name:        "job not loaded: reload",
			facts:       func(f Facts) Facts { f.Job = JobState{}; return f },
			wantService: ServiceReload,
		},
		{
			name:        "job loaded but stopped: kickstart",
			facts:       func(f Facts) Facts { f.Job = JobState{Loaded: true, State: "not running"}; return f },
			wantService: ServiceKickstart,
		},
		{
			name:        "no state file, contents equal",
			facts:       func(f Facts) Facts { f.State = installState{}; f.Hashes["/bin/vz-node"] = files[3].SHA256(); return f },
			wantService: ServiceNone,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fs := files
			if c.files != nil {
				fs = c.files()
			}
			facts := installedFacts(files)
			if c.facts != nil {
				facts = c.facts(facts)
			}
			p := computePlan(fs, facts)
			var got []FileKind
			for _, ch := range p.Changes {
				got = append(got, ch.File.Kind)
				if c.wantReason != "" && ch.File.Kind == KindBinary && !strings.Contains(ch.Reason, c.wantReason) {
					t.Errorf("binary change reason = %q, want %q", ch.Reason, c.wantReason)
				}
			}
			if strings.Join(kinds(got), ",") != strings.Join(kinds(c.wantChanges), ",") {
				t.Errorf("changes = %v, want %v", got, c.wantChanges)
			}
			if p.Service != c.wantService {
				t.Errorf("service = %s (%s), want %s", p.Service, p.ServiceReason, c.wantService)
			}
			if (len(c.wantChanges) == 0 && c.wantService == ServiceNone) != p.Empty() {
				t.Errorf("Empty() = %v", p.Empty())
			}
		})
	}
}

func kinds(k []FileKind) []string {
	out := make([]string, len(k))
	for i, v := range k {
		out[i] = string(v)
	}
	return out
}

func TestPlanWriteHidesSecrets(t *testing.T) {
	files := testFiles()
	facts := installedFacts(files)
	changed := testFiles()
	changed[1].Content = []byte("a: 1\nb: 3\n")
	changed[2].Content = []byte("NEW-SECRET-TOKEN")
	p := computePlan(changed, facts)
	p.Changes[0].Diff = lineDiff(string(files[1].Content), string(changed[1].Content))
	p.Changes[1].Diff = lineDiff(string(files[2].Content), string(changed[2].Content)) // must never be shown
	p.Node = []string{"label pool=ci"}
	var b bytes.Buffer
	p.Write(&b, "")
	out := b.String()
	for _, secret := range []string{"TOPSECRET", "NEW-SECRET"} {
		if strings.Contains(out, secret) {
			t.Errorf("plan output shows a secret:\n%s", out)
		}
	}
	for _, want := range []string{"~ kubeconfig /cfg/kubeconfig 0600 (secret changed)", "- b: 2", "+ b: 3", "~ node label pool=ci", "! service: kickstart"} {
		if !strings.Contains(out, want) {
			t.Errorf("plan output lacks %q:\n%s", want, out)
		}
	}
	b.Reset()
	Plan{}.Write(&b, "  ")
	if b.String() != "  no changes\n" {
		t.Errorf("empty plan = %q", b.String())
	}
}

func TestLineDiff(t *testing.T) {
	cases := []struct{ old, new, want string }{
		{"a\nb\nc\n", "a\nb\nc\n", ""},
		{"a\nb\nc\n", "a\nB\nc\n", "  a\n- b\n+ B\n  c\n"},
		{"", "x\n", "+ x\n"},
		{"1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n", "1\nuno\n3\n4\n5\n6\n7\n8\n9\nten\n", "  1\n- 2\n+ uno\n  3\n  4\n  ...\n  8\n  9\n- 10\n+ ten\n"},
	}
	for _, c := range cases {
		if got := lineDiff(c.old, c.new); got != c.want {
			t.Errorf("lineDiff(%q, %q) =\n%s\nwant\n%s", c.old, c.new, got, c.want)
		}
	}
}
