package fleet

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vzfleet/vzfleet/fleet/remote"
	"github.com/vzfleet/vzfleet/inventory"
)

var updateGolden = flag.Bool("update-prepull", false, "rewrite fleet/testdata/prepull-*.golden")

func TestPullProgressApply(t *testing.T) {
	tests := []struct {
		name  string
		lines []string
		want  PullProgress // compared: State, BytesDone, BytesTotal, Downloaded, Chunks, Rate, ETA, Err text
	}{
		{
			name:  "first report: rate is the average so far",
			lines: []string{`{"reference":"r","digest":"sha256:a","bytesDone":100,"bytesTotal":1000,"downloaded":40,"chunksDone":1,"chunksTotal":10,"elapsedSeconds":2}`},
			want:  PullProgress{State: PullWaiting, Digest: "sha256:a", BytesDone: 100, BytesTotal: 1000, Downloaded: 40, ChunksDone: 1, ChunksTotal: 10, Rate: 50, ETA: 18 * time.Second},
		},
		{
			name: "later reports smooth the rate",
			lines: []string{
				`{"bytesDone":100,"bytesTotal":1000,"elapsedSeconds":1}`,
				`{"bytesDone":300,"bytesTotal":1000,"elapsedSeconds":2}`,
			},
			// 0.3*200 + 0.7*100 = 130 B/s; 700 B left.
			want: PullProgress{State: PullWaiting, BytesDone: 300, BytesTotal: 1000, Rate: 130, ETA: 5385 * time.Millisecond},
		},
		{
			name: "done: average rate, no ETA, downloaded kept",
			lines: []string{
				`{"bytesDone":500,"bytesTotal":1000,"downloaded":300,"chunksDone":5,"chunksTotal":10,"elapsedSeconds":1}`,
				`{"digest":"sha256:b","bytesDone":1000,"bytesTotal":1000,"elapsedSeconds":4,"done":true}`,
			},
			want: PullProgress{State: PullDone, Digest: "sha256:b", BytesDone: 1000, BytesTotal: 1000, Downloaded: 300, ChunksDone: 5, ChunksTotal: 10, Rate: 250},
		},
		{
			name:  "error line",
			lines: []string{`{"reference":"r","error":"pulling r: not found"}`},
			want:  PullProgress{State: PullFailed, Err: errors.New("pulling r: not found")},
		},
		{
			name:  "lines that are not progress are ignored",
			lines: []string{"", "warning: something", `[1,2]`, `{"bytesDone":5,"bytesTotal":10,"elapsedSeconds":1}`},
			want:  PullProgress{State: PullWaiting, BytesDone: 5, BytesTotal: 10, Rate: 5, ETA: time.Second},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := PullProgress{State: PullWaiting}
			for _, l := range tt.lines {
				p.apply([]byte(l))
			}
			w := tt.want
			if p.State != w.State || p.Digest != w.Digest || p.BytesDone != w.BytesDone || p.BytesTotal != w.BytesTotal ||
				p.Downloaded != w.Downloaded || p.ChunksDone != w.ChunksDone || p.ChunksTotal != w.ChunksTotal ||
				p.Rate != w.Rate || p.ETA.Round(time.Millisecond) != w.ETA.Round(time.Millisecond) || errText(p.Err) != errText(w.Err) {
				t.Errorf("got  %+v\nwant %+v", p, w)
			}
		})
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestLineWriter(t *testing.T) {
	var got []string
	w := &lineWriter{fn: func(b []byte) { got = append(got, string(b)) }}
	for _, s := range []string{`{"a":`, `1}` + "\n" + `{"b"`, ":2}\n\n", "tail"} {
		w.Write([]byte(s))
	}
	want := []string{`{"a":1}`, `{"b":2}`, ""}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("lines %q, want %q", got, want)
	}
}

func FuzzPullProgressApply(f *testing.F) {
	f.Add([]byte(`{"bytesDone":1,"bytesTotal":2,"elapsedSeconds":1}`))
	f.Add([]byte(`{"error":"x"}`))
	f.Add([]byte(`{"done":true,"elapsedSeconds":-1,"bytesDone":-5}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var p PullProgress
		p.apply(b)
		p.apply(b)
		_ = FormatPullProgress(p)
	})
}

// countingHost tracks how many hosts are connected at once.
type countingHost struct {
	remote.Host
	release func()
}

func (c countingHost) Close() error { c.release(); return c.Host.Close() }

// fakeVZNode writes a script that behaves like `vz-node pull --progress=json`.
func fakeVZNode(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// Prepull runs the pull on each host through the remote.Host interface (the
// local implementation here, with scripts standing in for vz-node), caps the
// hosts pulling at once, and keeps going when hosts fail.
func TestPrepull(t *testing.T) {
	dir := t.TempDir()
	ok := fakeVZNode(t, dir, "ok", `test "$1" = pull && test "$2" = reg/img:1 && test "$3" = --cache-dir || { echo "bad args: $*" >&2; exit 2; }
sleep 0.2
echo '{"reference":"reg/img:1","digest":"sha256:d","bytesDone":512,"bytesTotal":1024,"downloaded":100,"chunksDone":1,"chunksTotal":2,"elapsedSeconds":1}'
echo '{"reference":"reg/img:1","digest":"sha256:d","bytesDone":1024,"bytesTotal":1024,"elapsedSeconds":2,"done":true}'
`)
	failing := fakeVZNode(t, dir, "failing", `echo '{"reference":"reg/img:1","error":"pulling reg/img:1: manifest unknown"}'
echo "vz-node: pulling reg/img:1: manifest unknown" >&2
exit 1
`)
	crashing := fakeVZNode(t, dir, "crashing", `echo "segmentation fault" >&2; exit 139`)
	silent := fakeVZNode(t, dir, "silent", `exit 0`)
	stalled := fakeVZNode(t, dir, "stalled", `echo '{"reference":"reg/img:1","digest":"sha256:d","bytesDone":512,"bytesTotal":1024,"elapsedSeconds":1}'
exec sleep 120`)

	host := func(name, bin string) inventory.Host {
		h := inventory.Host{Name: name}
		h.Paths.Binary, h.Paths.CacheDir = bin, filepath.Join(dir, "cache-"+name)
		return h
	}
	hosts := []inventory.Host{
		host("a", ok), host("b", ok), host("c", failing), host("d", ok), host("e", crashing),
		host("f", silent), host("unreachable", ok), host("g", ok), host("h", filepath.Join(dir, "not-installed")),
		host("i", stalled),
	}
	var (
		mu           sync.Mutex
		active, peak int
		updates      []PullProgress
	)
	res := Prepull(context.Background(), hosts, PrepullOptions{
		Ref: "reg/img:1", MaxHosts: 2, Concurrency: 3, Insecure: []string{"reg"}, StallTimeout: 2 * time.Second,
		Connect: func(_ context.Context, h inventory.Host) (remote.Host, error) {
			if h.Name == "unreachable" {
				return nil, errors.New("dial tcp: connection refused")
			}
			mu.Lock()
			active++
			peak = max(peak, active)
			mu.Unlock()
			return countingHost{Host: remote.NewLocal(remote.LocalOptions{Name: h.Name}), release: func() {
				mu.Lock()
				active--
				mu.Unlock()
			}}, nil
		},
		Update: func(p PullProgress) { updates = append(updates, p) },
	})
	if peak > 2 {
		t.Errorf("%d hosts pulled at once, want at most 2", peak)
	}
	want := map[string]string{
		"a": "", "b": "", "d": "", "g": "",
		"c":           "manifest unknown",
		"e":           "segmentation fault",
		"f":           "without reporting the image as done",
		"unreachable": "connection refused",
		"h":           "vz-node is not installed at " + filepath.Join(dir, "not-installed"),
		"i":           "vz-node pull reported no progress for 2s",
	}
	for _, p := range res {
		w := want[p.Host]
		switch {
		case w == "" && (p.State != PullDone || p.Digest != "sha256:d" || p.BytesTotal != 1024 || p.Downloaded != 100):
			t.Errorf("%s: %+v, want done with sha256:d", p.Host, p)
		case w != "" && (p.State != PullFailed || !strings.Contains(errText(p.Err), w)):
			t.Errorf("%s: %s %v, want failed with %q", p.Host, p.State, p.Err, w)
		}
	}
	err := PrepullErr(res)
	if err == nil || !strings.Contains(err.Error(), "6 of 10 hosts failed") {
		t.Fatalf("PrepullErr: %v", err)
	}
	for _, h := range []string{"c (", "e (", "f (", "unreachable (", "h (", "i ("} {
		if !strings.Contains(err.Error(), h) {
			t.Errorf("PrepullErr does not name %s: %v", h, err)
		}
	}
	var sawRunning bool
	for _, u := range updates {
		sawRunning = sawRunning || (u.State == PullRunning && u.BytesDone == 512)
	}
	if !sawRunning {
		t.Error("no update showed a host half way through its pull")
	}
}

func TestPrepullRendering(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	steps := []PullProgress{
		{Host: "mini-01", State: PullWaiting},
		{Host: "mini-02", State: PullWaiting},
		{Host: "mini-01", State: PullConnecting},
		{Host: "mini-01", State: PullRunning, BytesDone: 1 << 30, BytesTotal: 4 << 30, Downloaded: 300 << 20, ChunksDone: 2, ChunksTotal: 8, Rate: 100 << 20, ETA: 30 * time.Second},
		{Host: "mini-01", State: PullRunning, BytesDone: 3 << 29, BytesTotal: 4 << 30, ChunksDone: 3, ChunksTotal: 8, Rate: 100 << 20, ETA: 25 * time.Second},
		{Host: "mini-01", State: PullRunning, BytesDone: 2 << 30, BytesTotal: 4 << 30, ChunksDone: 4, ChunksTotal: 8, Rate: 100 << 20, ETA: 20 * time.Second},
		{Host: "mini-02", State: PullFailed, Err: errors.New("connecting to mini-02: connection refused")},
		{Host: "mini-01", State: PullDone, Digest: "sha256:abc", BytesDone: 4 << 30, BytesTotal: 4 << 30, Downloaded: 900 << 20, Elapsed: 41 * time.Second, Rate: 100 << 20},
	}
	for _, tty := range []bool{false, true} {
		var b bytes.Buffer
		pp := &PrepullPrinter{W: &b, TTY: tty, Now: clock}
		for i, s := range steps {
			if i == 5 { // the plain printer skips step 4: too soon after step 3
				now = now.Add(6 * time.Second)
			}
			pp.Update(s)
		}
		pp.Finish()
		b.WriteString("--- summary\n")
		if err := WritePrepullSummary(&b, []PullProgress{steps[7], steps[6]}); err != nil {
			t.Fatal(err)
		}
		name := "prepull-plain.golden"
		if tty {
			name = "prepull-tty.golden"
		}
		golden(t, filepath.Join("testdata", name), b.Bytes())
	}
}

func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *updateGolden {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update-prepull to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs:\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}
