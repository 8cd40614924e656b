package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestPullFlagErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"pull"}, "accepts 1 arg"},
		{[]string{"pull", "reg.local/vm:1", "--policy", "Never"}, `--policy "Never": want Always or IfNotPresent`},
		{[]string{"pull", "reg.local/vm:1", "--progress", "bar"}, `--progress "bar": want text or json`},
		{[]string{"pull", "not a reference"}, "want host[:port]/repository"},
		{[]string{"images", "-o", "yaml"}, `--output "yaml": want table or json`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			cmd := newRootCommand()
			cmd.SetArgs(append(tt.args, "--cache-dir", t.TempDir()))
			cmd.SetOut(&bytes.Buffer{})
			cmd.SetErr(&bytes.Buffer{})
			err := cmd.Execute()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestReporters(t *testing.T) {
	events := []pullEvent{
		{Reference: "r", Digest: "sha256:a", BytesDone: 1 << 20, BytesTotal: 4 << 20, Downloaded: 1 << 19, ChunksDone: 1, ChunksTotal: 4, Elapsed: 1},
		{Reference: "r", Digest: "sha256:a", BytesDone: 2 << 20, BytesTotal: 4 << 20, ChunksDone: 2, ChunksTotal: 4, Elapsed: 1.1},
		{Reference: "r", Digest: "sha256:a", BytesDone: 4 << 20, BytesTotal: 4 << 20, Elapsed: 2, Done: true, Disk: "/c/disk.img"},
	}
	var text, js bytes.Buffer
	tr, jr := textReporter(&text), jsonReporter(&js)
	for _, e := range events {
		tr(e)
		jr(e)
	}
	want := "r: 1.0 MiB / 4.0 MiB (25%), chunks 1/4, 512.0 KiB downloaded, 512.0 KiB/s\n" +
		"r: pulled sha256:a (4.0 MiB) in 2.0s\n  disk: /c/disk.img\n"
	if text.String() != want {
		t.Errorf("text progress (the second report is within a second of the first):\n%s\nwant:\n%s", text.String(), want)
	}
	lines := strings.Split(strings.TrimSpace(js.String()), "\n")
	if len(lines) != len(events) {
		t.Fatalf("%d JSON lines for %d reports:\n%s", len(lines), len(events), js.String())
	}
	var last map[string]any
	if err := json.Unmarshal([]byte(lines[2]), &last); err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]any{"reference": "r", "digest": "sha256:a", "done": true, "bytesTotal": float64(4 << 20), "elapsedSeconds": 2.0, "disk": "/c/disk.img"} {
		if last[k] != v {
			t.Errorf("last line %s = %v, want %v", k, last[k], v)
		}
	}
}
