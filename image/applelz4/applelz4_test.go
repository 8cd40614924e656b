package applelz4

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"testing/iotest"
)

func randBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// mixed returns data with zero runs, text-like repeats and random bytes.
func mixed(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, 0, n)
	for len(b) < n {
		switch r.IntN(3) {
		case 0:
			b = append(b, make([]byte, r.IntN(100000))...)
		case 1:
			w := randBytes(r, 1+r.IntN(200))
			for k := r.IntN(500); k > 0; k-- {
				b = append(b, w...)
			}
		default:
			b = append(b, randBytes(r, r.IntN(70000))...)
		}
	}
	return b[:n]
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	for _, size := range []int{0, 1, 100, BlockSize - 1, BlockSize, BlockSize + 1, 5*BlockSize + 17, 3 << 20} {
		data := mixed(uint64(size), size)
		var buf bytes.Buffer
		w := NewWriter(&buf)
		// odd write sizes exercise the buffering
		for p := data; len(p) > 0; {
			k := min(len(p), 10007)
			if _, err := w.Write(p[:k]); err != nil {
				t.Fatal(err)
			}
			p = p[k:]
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(NewReader(&buf))
		if err != nil {
			t.Fatalf("size %d: %v", size, err)
		}
		if !bytes.Equal(got, data) {
			t.Fatalf("size %d: round trip differs", size)
		}
	}
}

func TestWriterCompressesZeros(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	w := NewWriter(&buf)
	if _, err := w.Write(make([]byte, 8<<20)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if buf.Len() > 64<<10 {
		t.Fatalf("8 MiB of zeros compressed to %d bytes", buf.Len())
	}
	if !bytes.HasSuffix(buf.Bytes(), []byte("bv4$")) {
		t.Fatal("no end marker")
	}
}

func TestWriterStoresIncompressible(t *testing.T) {
	t.Parallel()
	data := randBytes(rand.New(rand.NewPCG(7, 7)), BlockSize)
	var buf bytes.Buffer
	w := NewWriter(&buf)
	w.Write(data)
	w.Close()
	if !bytes.HasPrefix(buf.Bytes(), []byte("bv4-")) || buf.Len() != 8+BlockSize+4 {
		t.Fatalf("random block not stored: prefix %q, len %d", buf.Bytes()[:4], buf.Len())
	}
}

// Matches that reach into previous blocks must decode, whichever way the
// caller reads (Read with tiny buffers, WriteTo).
func TestCrossBlockMatches(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(3, 4))
	a := randBytes(r, 40000)
	b := append(append([]byte{}, a[1000:30000]...), randBytes(r, 5000)...) // refers into block a
	c := append(append([]byte{}, b[100:20000]...), a[39000:]...)           // refers into b and a
	big := append(append([]byte{}, c...), c...)
	pieces := []piece{{data: a}, {data: b}, {data: c, stored: true}, {data: c}, {data: big}}
	frame, plain := buildFrame(pieces, true)
	// the dictionary encoder must really have produced cross-block matches:
	// block b alone would not decode without its dictionary.
	_, indep := buildFrame(pieces, false)
	if !bytes.Equal(plain, indep) {
		t.Fatal("test frames disagree on plain text")
	}
	crossFrame, _ := buildFrame(pieces[:2], true)
	noDictFrame, _ := buildFrame(pieces[:2], false)
	if len(crossFrame) >= len(noDictFrame) {
		t.Fatalf("dictionary frame (%d bytes) not smaller than independent (%d): no cross-block matches", len(crossFrame), len(noDictFrame))
	}

	got, err := io.ReadAll(iotest.OneByteReader(NewReader(bytes.NewReader(frame))))
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("Read: err %v, equal %v", err, bytes.Equal(got, plain))
	}
	var out bytes.Buffer
	if _, err := NewReader(iotest.HalfReader(bytes.NewReader(frame))).WriteTo(&out); err != nil || !bytes.Equal(out.Bytes(), plain) {
		t.Fatalf("WriteTo: err %v, equal %v", err, bytes.Equal(out.Bytes(), plain))
	}
}

// longFrame is a 6 MiB stream of mixed data (seeded by seed) in blocks of
// 30-80 KB that refer across blocks, every seventh stored.
func longFrame(seed uint64) (frame, plain []byte) {
	var pieces []piece
	for p := mixed(seed, 6<<20); len(p) > 0; {
		k := min(len(p), 30000+len(p)%50000)
		pieces = append(pieces, piece{data: p[:k], stored: len(pieces)%7 == 3})
		p = p[k:]
	}
	return buildFrame(pieces, true)
}

// Long streams make the history slide through the buffer many times.
func TestCrossBlockLongStream(t *testing.T) {
	t.Parallel()
	frame, plain := longFrame(99)
	got, err := io.ReadAll(NewReader(bytes.NewReader(frame)))
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("err %v, equal %v", err, bytes.Equal(got, plain))
	}
}

// WriteTo gathers blocks into large writes while the history slides.
func TestWriteToLongStream(t *testing.T) {
	t.Parallel()
	frame, plain := longFrame(77)
	var w sizeRecorder
	if _, err := NewReader(bytes.NewReader(frame)).WriteTo(&w); err != nil || !bytes.Equal(w.Bytes(), plain) {
		t.Fatalf("err %v, equal %v", err, bytes.Equal(w.Bytes(), plain))
	}
	if avg := len(plain) / w.writes; avg < writeAhead/2 {
		t.Fatalf("%d writes of %d bytes on average; want about %d", w.writes, avg, writeAhead)
	}
}

type sizeRecorder struct {
	bytes.Buffer
	writes int
}

func (s *sizeRecorder) Write(p []byte) (int, error) {
	s.writes++
	return s.Buffer.Write(p)
}

func TestConcatenatedStreams(t *testing.T) {
	t.Parallel()
	f1, p1 := buildFrame([]piece{{data: []byte(strings.Repeat("abc", 1000))}}, true)
	f2, p2 := buildFrame([]piece{{data: []byte("tail data here, long enough")}}, true)
	got, err := io.ReadAll(NewReader(bytes.NewReader(append(f1, f2...))))
	if err != nil || string(got) != string(p1)+string(p2) {
		t.Fatalf("err %v got %d bytes", err, len(got))
	}
}

func le32(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func TestMalformed(t *testing.T) {
	t.Parallel()
	good, _ := buildFrame([]piece{{data: bytes.Repeat([]byte("hello world "), 100)}}, true)
	tests := []struct {
		name  string
		in    []byte
		want  string
		unexp bool
	}{
		{"empty", nil, "empty stream", true},
		{"bad magic", []byte("bv42xxxx"), `unknown block magic "bv42"`, false},
		{"no end marker", good[:len(good)-4], "without the bv4$ end marker", true},
		{"truncated header", []byte("bv41\x01\x00"), "truncated compressed block header", true},
		{"truncated data", cat([]byte("bv41"), le32(100), le32(50), []byte("abc")), "truncated compressed block data", true},
		{"truncated stored", cat([]byte("bv4-"), le32(10), []byte("abc")), "truncated stored block data", true},
		{"huge decoded size", cat([]byte("bv41"), le32(1<<31), le32(10)), "exceeds the", false},
		{"huge stored size", cat([]byte("bv4-"), le32(MaxBlockSize+1)), "exceeds the", false},
		{"encoded larger than bound", cat([]byte("bv41"), le32(10), le32(1000)), "larger than any LZ4 encoding", false},
		{"decoded size too small", cat([]byte("bv41"), le32(20), good[8:12], good[12:len(good)-4], []byte("bv4$")), "invalid LZ4 data", false},
		{"decoded size too large", cat([]byte("bv41"), le32(1300), good[8:12], good[12:len(good)-4], []byte("bv4$")), "header says 1300", false},
		{"match before start", cat([]byte("bv41"), le32(20), le32(8), []byte{0x10, 'a', 0xff, 0x00, 0x00, 0, 0, 0}, []byte("bv4$")), "invalid LZ4 data", false},
		{"garbage after end", append(append([]byte{}, good...), 'x'), "truncated block magic", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := io.ReadAll(NewReader(bytes.NewReader(tc.in)))
			if err == nil {
				t.Fatal("no error")
			}
			if !errors.Is(err, ErrCorrupt) {
				t.Errorf("error %v does not wrap ErrCorrupt", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
			if errors.Is(err, io.ErrUnexpectedEOF) != tc.unexp {
				t.Errorf("error %q: wraps ErrUnexpectedEOF = %v, want %v", err, !tc.unexp, tc.unexp)
			}
		})
	}
}

func TestIOErrorPassesThrough(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	_, err := io.ReadAll(NewReader(io.MultiReader(bytes.NewReader([]byte("bv4-")), iotest.ErrReader(boom))))
	if !errors.Is(err, boom) || errors.Is(err, ErrCorrupt) {
		t.Fatalf("got %v", err)
	}
}

func FuzzReader(f *testing.F) {
	good, _ := buildFrame([]piece{{data: []byte(strings.Repeat("abcdefgh", 300))}, {data: []byte("stored!"), stored: true}, {data: []byte(strings.Repeat("abcdefgh", 40) + "end of it all")}}, true)
	f.Add(good)
	f.Add([]byte("bv4$"))
	f.Add(cat([]byte("bv4-"), le32(3), []byte("abcbv4$")))
	f.Add(cat([]byte("bv41"), le32(20), le32(8), []byte{0x10, 'a', 0xff, 0x00, 0x00, 0, 0, 0}, []byte("bv4$")))
	f.Fuzz(func(t *testing.T, in []byte) {
		z := NewReader(bytes.NewReader(in))
		var total int
		buf := make([]byte, 1000)
		for {
			n, err := z.Read(buf)
			total += n
			if err != nil {
				if err != io.EOF && !errors.Is(err, ErrCorrupt) {
					t.Fatalf("unexpected error class: %v", err)
				}
				break
			}
		}
		// Output is bounded by the declared block sizes, which are bounded by the input.
		if total > (len(in)/8+1)*MaxBlockSize {
			t.Fatalf("decoded %d bytes from %d", total, len(in))
		}
		// WriteTo decodes the same bytes and fails the same way.
		var viaRead, viaWriteTo bytes.Buffer
		_, rerr := io.Copy(&viaRead, struct{ io.Reader }{NewReader(bytes.NewReader(in))})
		_, werr := NewReader(bytes.NewReader(in)).WriteTo(&viaWriteTo)
		if !bytes.Equal(viaRead.Bytes(), viaWriteTo.Bytes()) || (rerr == nil) != (werr == nil) {
			t.Fatalf("Read gave %d bytes (err %v), WriteTo %d bytes (err %v)", viaRead.Len(), rerr, viaWriteTo.Len(), werr)
		}
	})
}
