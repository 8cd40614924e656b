package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/vzfleet/vzfleet/image"
	"github.com/vzfleet/vzfleet/image/format"
	"github.com/vzfleet/vzfleet/test/harness"
)

// fleetctl prepull killed in the middle of a host's pull, then run again:
// the second run fetches only the chunk that was in flight, not the chunks
// the first run finished (vz-node's pull resumes from the cache's partial
// image). The host reaches the registry through a proxy that stalls the
// last chunk until fleetctl has been killed, then refuses it until the
// interrupted vz-node has gone, so the kill lands mid-chunk every time.
func TestImagePrepullResumesAfterKill(t *testing.T) {
	fl := startFleetLab(t)
	reg := harness.RegistryT(t)
	vm := filepath.Join(fl.dir, "vm")
	makeTestVM(t, vm, 64<<20)
	out, _ := mustRun(t, 2*time.Minute, fl.fleetctlBin, "image", "push", vm, reg.Addr+"/e2e/resume:v1", "--chunk-size", "1048576")
	pushed := strings.TrimSpace(out)
	desc, err := image.Inspect(context.Background(), reg.Addr+"/e2e/resume:v1", image.Remote{})
	if err != nil {
		t.Fatal(err)
	}
	last := desc.Image.Disk[len(desc.Image.Disk)-1] // random bytes: a real download

	px := newStallProxy(t, reg.Addr, last.Layer.Digest.String())
	fl.forward(px.Listener.Addr().String())
	ref := px.Listener.Addr().String() + "/e2e/resume:v1"
	host := fl.lab.Host("mini-01")
	b, err := os.ReadFile(fl.vzNode["v0.1.0-e2e"])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(host.Path(binaryPath), b, 0o755); err != nil {
		t.Fatal(err)
	}
	cache := host.Path("/Library/Caches/vzfleet/oci")
	progressPath := filepath.Join(cache, "partial", strings.Replace(pushed, ":", "-", 1), "progress.json")
	prepull := func(ctx context.Context) *exec.Cmd {
		cmd := exec.CommandContext(ctx, fl.fleetctlBin, "prepull", ref, fl.inventory, "--ssh-config", "none", "--limit", "mini-01")
		cmd.Env = append(os.Environ(), "SSH_AUTH_SOCK=")
		return cmd
	}

	// First run: killed once the last chunk is stalled mid-blob.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	first := prepull(ctx)
	var firstOut bytes.Buffer
	first.Stdout, first.Stderr = &firstOut, &firstOut
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-px.stalled:
	case <-ctx.Done():
		t.Fatalf("the pull never reached the last chunk\n%s", firstOut.String())
	}
	first.Process.Kill()
	first.Wait()
	px.refuse() // the orphaned vz-node must not finish the chunk
	waitNoPull(t, ref)

	var prog struct {
		Done map[int]string `json:"done"`
	}
	pb, err := os.ReadFile(progressPath)
	if err != nil {
		t.Fatalf("no partial pull left after the kill: %v", err)
	}
	if err := json.Unmarshal(pb, &prog); err != nil {
		t.Fatal(err)
	}
	zero := func(ch format.Chunk) bool { return ch.Digest == digest.FromBytes(make([]byte, ch.Size)) }
	downloaded := 0 // chunks done before the kill that had to be downloaded
	for i := range prog.Done {
		if !zero(desc.Image.Disk[i]) {
			downloaded++
		}
	}
	if _, ok := prog.Done[last.Index]; ok || downloaded == 0 {
		t.Fatalf("after the kill: %d of %d chunks recorded done, %d of them downloaded, the stalled one %v; want some downloaded, not the stalled one",
			len(prog.Done), len(desc.Image.Disk), downloaded, ok)
	}
	t.Logf("killed fleetctl mid-chunk; %d of %d chunks (%d downloaded) were recorded done", len(prog.Done), len(desc.Image.Disk), downloaded)

	// Second run: only the interrupted chunk is downloaded.
	px.serveAll()
	second := prepull(ctx)
	sb, err := second.CombinedOutput()
	if err != nil || !strings.Contains(string(sb), "1 of 1 hosts have the image.") {
		t.Fatalf("second prepull: %v\n%s", err, sb)
	}
	sameContent(t, filepath.Join(vm, "disk.img"), filepath.Join(cache, "images", strings.Replace(pushed, ":", "-", 1), "disk.img"))
	for _, ch := range desc.Image.Disk {
		n := px.gets(ch.Layer.Digest.String())
		_, done := prog.Done[ch.Index]
		switch {
		case done && n != 0:
			t.Errorf("chunk %d, finished before the kill, was fetched %d times by the second run", ch.Index, n)
		case !done && !zero(ch) && n != 1:
			t.Errorf("chunk %d, not finished before the kill, was fetched %d times by the second run, want 1", ch.Index, n)
		}
	}
}

// stallProxy forwards to a registry and counts blob GETs. The first GET
// of the stall blob sends half of it and then hangs; refuse makes further
// GETs of it fail; serveAll forwards everything again and resets the
// counts.
type stallProxy struct {
	*httptest.Server
	stallDigest string
	stalled     chan struct{}

	mu      sync.Mutex
	state   string // "stall", "refuse", "serve"
	counts  map[string]int
	release chan struct{}
}

func newStallProxy(t *testing.T, registryAddr, stallDigest string) *stallProxy {
	p := &stallProxy{stallDigest: stallDigest, stalled: make(chan struct{}), state: "stall", counts: map[string]int{}, release: make(chan struct{})}
	rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: registryAddr})
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i := strings.Index(r.URL.Path, "/blobs/sha256:")
		if i < 0 || r.Method != http.MethodGet {
			rp.ServeHTTP(w, r)
			return
		}
		d := r.URL.Path[i+len("/blobs/"):]
		p.mu.Lock()
		p.counts[d]++
		state := p.state
		if d == p.stallDigest && state == "stall" {
			p.state = "stalled"
		}
		p.mu.Unlock()
		switch {
		case d != p.stallDigest || state == "serve":
			rp.ServeHTTP(w, r)
		case state == "stall":
			p.stall(w, r, registryAddr)
		default:
			http.Error(w, "refused by the test", http.StatusNotFound)
		}
	}))
	t.Cleanup(func() {
		p.mu.Lock()
		select {
		case <-p.release:
		default:
			close(p.release)
		}
		p.mu.Unlock()
		p.Close()
	})
	return p
}

func (p *stallProxy) stall(w http.ResponseWriter, r *http.Request, registryAddr string) {
	resp, err := http.Get("http://" + registryAddr + r.URL.Path)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	size, _ := strconv.ParseInt(resp.Header.Get("Content-Length"), 10, 64)
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	io.CopyN(w, resp.Body, size/2)
	w.(http.Flusher).Flush()
	close(p.stalled)
	select {
	case <-p.release:
	case <-r.Context().Done():
	}
	panic(http.ErrAbortHandler) // drop the connection mid-blob
}

// refuse ends the stalled download and fails further GETs of its blob.
func (p *stallProxy) refuse() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.state = "refuse"
	close(p.release)
}

func (p *stallProxy) serveAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.state, p.counts = "serve", map[string]int{}
}

func (p *stallProxy) gets(d string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.counts[d]
}

// waitNoPull waits until no `vz-node pull ref` process is left (the one
// fleetctl started over SSH ends once its session is gone and its blob
// fails).
func waitNoPull(t *testing.T, ref string) {
	t.Helper()
	deadline := time.Now().Add(45 * time.Second)
	for {
		found := false
		dirs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
		for _, f := range dirs {
			b, err := os.ReadFile(f)
			if err != nil {
				continue
			}
			args := strings.Split(string(b), "\x00")
			if len(args) > 2 && filepath.Base(args[0]) == "vz-node" && args[1] == "pull" && args[2] == ref {
				found = true
				break
			}
		}
		if !found {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("vz-node pull %s still runs 45 s after fleetctl was killed", ref)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
