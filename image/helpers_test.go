package image

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/vzfleet/vzfleet/image/format"
	"github.com/vzfleet/vzfleet/test/harness"
)

// region is a part of a generated disk; everything else is a hole.
type region struct {
	off, size int64
	kind      string // "text" (compressible) or "random"
	seed      uint64
}

// makeVMDir writes a VM directory with a sparse disk of the given size.
func makeVMDir(t testing.TB, dir string, size int64, regions []region) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg, err := os.ReadFile("format/testdata/tart-config.json")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, ConfigFile), cfg)
	nv := make([]byte, 64<<10)
	for i := range nv {
		nv[i] = byte(i * 7)
	}
	writeFile(t, filepath.Join(dir, NVRAMFile), nv)
	f, err := os.Create(filepath.Join(dir, DiskFile))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	for _, r := range regions {
		writeRegion(t, f, r)
	}
}

func writeRegion(t testing.TB, f *os.File, r region) {
	t.Helper()
	rng := rand.New(rand.NewPCG(r.seed, 42))
	buf := make([]byte, 1<<20)
	line := []byte("the quick brown fox jumps over the lazy dog 0123456789\n")
	for done := int64(0); done < r.size; {
		n := min(int64(len(buf)), r.size-done)
		switch r.kind {
		case "random":
			for i := range buf[:n] {
				buf[i] = byte(rng.Uint32())
			}
		default:
			for i := int64(0); i < n; i += int64(len(line)) {
				copy(buf[i:n], line)
				buf[i] = byte(rng.Uint32() % 26)
			}
		}
		if _, err := f.WriteAt(buf[:n], r.off+done); err != nil {
			t.Fatal(err)
		}
		done += n
	}
}

func writeFile(t testing.TB, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// sameFile compares two files byte for byte.
func sameFile(t testing.TB, a, b string) {
	t.Helper()
	fa, err := os.Open(a)
	if err != nil {
		t.Fatal(err)
	}
	defer fa.Close()
	fb, err := os.Open(b)
	if err != nil {
		t.Fatal(err)
	}
	defer fb.Close()
	ba, bb := make([]byte, 4<<20), make([]byte, 4<<20)
	var off int64
	for {
		na, ea := io.ReadFull(fa, ba)
		nb, eb := io.ReadFull(fb, bb)
		if na != nb || !bytes.Equal(ba[:na], bb[:nb]) {
			for i := 0; i < min(na, nb); i++ {
				if ba[i] != bb[i] {
					t.Fatalf("%s and %s differ at byte %d", a, b, off+int64(i))
				}
			}
			t.Fatalf("%s and %s differ in length near byte %d", a, b, off+int64(min(na, nb)))
		}
		off += int64(na)
		if ea != nil || eb != nil {
			return
		}
	}
}

// proxy sits in front of the registry, counts requests and can break
// blob downloads.
type proxy struct {
	*httptest.Server
	target *url.URL

	mu       sync.Mutex
	blobGets map[string]int // digest -> GETs
	ranges   map[string]int // digest -> GETs with a Range header
	cutAfter map[string]int64
	hold     map[string]holdAt
}

// holdAt stalls a blob download after some bytes until the client goes.
type holdAt struct {
	after   int64
	reached chan struct{}
}

func newProxy(t testing.TB, registryAddr string) *proxy {
	p := &proxy{target: &url.URL{Scheme: "http", Host: registryAddr}, blobGets: map[string]int{}, ranges: map[string]int{}, cutAfter: map[string]int64{}}
	p.Server = httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(p.Close)
	return p
}

func (p *proxy) addr() string { return strings.TrimPrefix(p.URL, "http://") }

func (p *proxy) serve(w http.ResponseWriter, r *http.Request) {
	var cut int64 = -1
	var hold *holdAt
	if i := strings.Index(r.URL.Path, "/blobs/sha256:"); i >= 0 && r.Method == http.MethodGet {
		d := r.URL.Path[i+len("/blobs/"):]
		p.mu.Lock()
		p.blobGets[d]++
		if r.Header.Get("Range") != "" {
			p.ranges[d]++
		} else if n, ok := p.cutAfter[d]; ok {
			cut = n
			delete(p.cutAfter, d)
		} else if h, ok := p.hold[d]; ok {
			hold = &h
			delete(p.hold, d)
		}
		p.mu.Unlock()
	}
	out := r.Clone(context.Background())
	out.URL.Scheme, out.URL.Host, out.RequestURI, out.Host = p.target.Scheme, p.target.Host, "", p.target.Host
	resp, err := http.DefaultTransport.RoundTrip(out)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	for k, v := range resp.Header {
		if k == "Location" {
			for i := range v {
				v[i] = strings.Replace(v[i], p.target.Host, r.Host, 1)
			}
		}
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	if hold != nil {
		io.CopyN(w, resp.Body, hold.after)
		w.(http.Flusher).Flush()
		close(hold.reached)
		<-r.Context().Done()
		return
	}
	if cut >= 0 {
		io.CopyN(w, resp.Body, cut)
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler) // drop the connection mid-body
	}
	io.Copy(w, resp.Body)
}

// stall makes the first GET of blob d hang (after a few bytes) until the
// client goes, so a pull cannot finish before the test cancels it.
func (p *proxy) stall(d string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.hold == nil {
		p.hold = map[string]holdAt{}
	}
	p.hold[d] = holdAt{after: 100, reached: make(chan struct{})}
}

func (p *proxy) gets(d string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.blobGets[d]
}

func (p *proxy) reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.blobGets, p.ranges = map[string]int{}, map[string]int{}
	p.hold = nil // stalls not reached yet are off
}

// diskGets counts GETs of the image's disk chunk blobs.
func (p *proxy) diskGets(im *format.Image) int {
	n := 0
	for _, c := range im.Disk {
		n += p.gets(c.Layer.Digest.String())
	}
	return n
}

func startRegistry(t testing.TB) *harness.Registry {
	return harness.RegistryT(t)
}
