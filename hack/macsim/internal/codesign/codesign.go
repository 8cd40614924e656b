// Package codesign stands in for macOS codesign(1) on a simulated host: it
// signs ad hoc (`--sign -`), records entitlements, verifies and displays
// signatures with the real tool's messages and exit codes.
//
// Like a real signature, the record travels with the file's content: for
// executables (ELF here, Mach-O on a Mac) it is appended to the file, so
// signing changes the file's bytes and hash, a copy stays signed, and any
// later change to the code invalidates it. Other files carry it in an
// extended attribute, as macOS does for non-Mach-O code.
package codesign

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/vzfleet/vzfleet/hack/macsim/internal/plist"
)

// Signature is what macsim records for a signed file.
type Signature struct {
	Identifier string `json:"identifier"`
	// Identity is "-" for an ad hoc signature.
	Identity string `json:"identity"`
	// Runtime is the hardened runtime flag (--options runtime).
	Runtime bool `json:"runtime,omitempty"`
	// Entitlements is the entitlements plist as given at signing.
	Entitlements []byte `json:"entitlements,omitempty"`
	// CodeSHA256 is the hash of the file's code (its bytes without the
	// signature) at signing time.
	CodeSHA256 string `json:"codeSHA256"`
}

// trailerMagic ends an appended signature: payload, its length (8 bytes,
// big endian), then the magic.
var trailerMagic = []byte("\x00MACSIM-CSIG-v1\x00")

const xattrName = "user.macsim.codesign"

// isExecutable reports whether the file starts like an ELF or Mach-O binary.
func isExecutable(head []byte) bool {
	for _, m := range [][]byte{{0x7f, 'E', 'L', 'F'}, {0xcf, 0xfa, 0xed, 0xfe}, {0xfe, 0xed, 0xfa, 0xcf}, {0xca, 0xfe, 0xba, 0xbe}} {
		if bytes.HasPrefix(head, m) {
			return true
		}
	}
	return false
}

// Read returns a file's signature (nil when unsigned) and the hash of its
// current code, reading the file once (codesign -v hashes every page of
// the code too).
func Read(path string) (*Signature, string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, "", err
	}
	defer f.Close()
	codeLen, payload, err := locate(f)
	if err != nil {
		return nil, "", err
	}
	hash, err := hashCode(f, codeLen)
	if err != nil {
		return nil, "", err
	}
	sig, err := decode(path, payload)
	return sig, hash, err
}

// readSignature returns a file's signature (nil when unsigned) without
// hashing its code: what codesign -d reads, which displays a signature
// without validating it.
func readSignature(path string) (*Signature, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	_, payload, err := locate(f)
	if err != nil {
		return nil, err
	}
	return decode(path, payload)
}

// decode parses an appended signature, or the extended attribute one
// when nothing is appended.
func decode(path string, payload []byte) (*Signature, error) {
	if payload == nil {
		var err error
		payload, err = getxattr(path, xattrName)
		if err != nil || payload == nil {
			return nil, nil
		}
	}
	var sig Signature
	if err := json.Unmarshal(payload, &sig); err != nil {
		return nil, fmt.Errorf("%s: corrupt macsim signature: %w", path, err)
	}
	return &sig, nil
}

// locate finds an appended signature in f from its last bytes: the length
// of the code before it and its payload (nil: none appended).
func locate(f *os.File) (int64, []byte, error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, nil, err
	}
	return splitTrailer(f, fi.Size())
}

// splitTrailer reads an appended signature's trailer from the end of r
// (size bytes): the code's length and the payload, or size and nil when
// the content ends in no valid trailer.
func splitTrailer(r io.ReaderAt, size int64) (codeLen int64, payload []byte, err error) {
	n := int64(len(trailerMagic) + 8)
	if size < n {
		return size, nil, nil
	}
	tail := make([]byte, n)
	if _, err := r.ReadAt(tail, size-n); err != nil {
		return 0, nil, err
	}
	if !bytes.HasSuffix(tail, trailerMagic) {
		return size, nil, nil
	}
	plen := binary.BigEndian.Uint64(tail)
	if plen > uint64(size-n) {
		return size, nil, nil
	}
	start := size - n - int64(plen)
	payload = make([]byte, plen)
	if _, err := r.ReadAt(payload, start); err != nil {
		return 0, nil, err
	}
	return start, payload, nil
}

// hashCode is the sha256 of the first codeLen bytes of f.
func hashCode(f *os.File, codeLen int64) (string, error) {
	h := sha256.New()
	if _, err := io.CopyBuffer(h, io.NewSectionReader(f, 0, codeLen), make([]byte, 1<<20)); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Sign signs path ad hoc, replacing any signature. Like codesign, it reads
// and hashes the code once.
func Sign(path string, sig Signature) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	codeLen, _, err := locate(f)
	if err != nil {
		return err
	}
	if sig.CodeSHA256, err = hashCode(f, codeLen); err != nil {
		return err
	}
	payload, err := json.Marshal(sig)
	if err != nil {
		return err
	}
	head := make([]byte, 4)
	n, _ := f.ReadAt(head, 0)
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if codeLen != fi.Size() {
		if err := f.Truncate(codeLen); err != nil {
			return err
		}
	}
	if !isExecutable(head[:n]) {
		if err := f.Close(); err != nil {
			return err
		}
		return setxattr(path, xattrName, payload)
	}
	var lenBuf [8]byte
	binary.BigEndian.PutUint64(lenBuf[:], uint64(len(payload)))
	trailer := append(append(payload, lenBuf[:]...), trailerMagic...)
	if _, err := f.WriteAt(trailer, codeLen); err != nil {
		return err
	}
	_ = removexattr(path, xattrName)
	return f.Close()
}

// Remove strips a signature.
func Remove(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	codeLen, payload, err := locate(f)
	if err != nil {
		return err
	}
	if payload != nil {
		if err := f.Truncate(codeLen); err != nil {
			return err
		}
	}
	_ = removexattr(path, xattrName)
	return f.Close()
}

type options struct {
	identity           string
	force, display     bool
	verify             bool
	verbose            int
	entitlements       string
	identifier         string
	runtime            bool
	removeSignature    bool
	xml                bool
	files              []string
	signSet, entitlSet bool
}

const usage = `Usage: codesign -s identity [-fv*] [-o flags] [-r reqs] [-i ident] path ... # sign
       codesign -v [-v*] [-R=<req string>|-R <req file path>] path|[+]pid ... # verify
       codesign -d [options] path ... # display contents
       codesign --remove-signature path ... # remove signature (macsim)
`

func parse(args []string) (*options, error) {
	o := &options{}
	need := func(i *int, name string) (string, error) {
		if *i+1 >= len(args) {
			return "", fmt.Errorf("option %s requires an argument", name)
		}
		*i++
		return args[*i], nil
	}
	var verbosity int
	for i := 0; i < len(args); i++ {
		a := args[i]
		var err error
		switch {
		case a == "--":
			o.files = append(o.files, args[i+1:]...)
			i = len(args)
		case a == "--sign" || a == "-s":
			o.identity, err = need(&i, a)
			o.signSet = true
		case strings.HasPrefix(a, "--sign="):
			o.identity, o.signSet = strings.TrimPrefix(a, "--sign="), true
		case a == "--force":
			o.force = true
		case a == "--display":
			o.display = true
		case a == "--verify":
			o.verify = true
		case a == "--verbose":
			verbosity++
		case strings.HasPrefix(a, "--verbose="):
			fmt.Sscanf(strings.TrimPrefix(a, "--verbose="), "%d", &verbosity)
		case a == "--entitlements":
			o.entitlements, err = need(&i, a)
			o.entitlSet = true
		case strings.HasPrefix(a, "--entitlements="):
			o.entitlements, o.entitlSet = strings.TrimPrefix(a, "--entitlements="), true
		case a == "--identifier" || a == "-i":
			o.identifier, err = need(&i, a)
		case a == "--options" || a == "-o":
			var v string
			v, err = need(&i, a)
			o.runtime = strings.Contains(v, "runtime")
		case strings.HasPrefix(a, "--options="):
			o.runtime = strings.Contains(a, "runtime")
		case a == "--remove-signature":
			o.removeSignature = true
		case a == "--xml":
			o.xml = true
		case a == "--deep", a == "--strict", a == "--timestamp", strings.HasPrefix(a, "--timestamp="),
			strings.HasPrefix(a, "--strict="), a == "--preserve-metadata", strings.HasPrefix(a, "--preserve-metadata="):
			// Accepted and meaningless for ad hoc signatures of single files.
		case strings.HasPrefix(a, "--"):
			return nil, fmt.Errorf("unrecognized option `%s'", a)
		case strings.HasPrefix(a, "-") && len(a) > 1:
			for _, f := range a[1:] {
				switch f {
				case 'f':
					o.force = true
				case 'd':
					o.display = true
				case 'v':
					verbosity++
				case 's':
					o.identity, err = need(&i, "-s")
					o.signSet = true
				default:
					return nil, fmt.Errorf("invalid option -- %c", f)
				}
			}
		default:
			o.files = append(o.files, a)
		}
		if err != nil {
			return nil, err
		}
	}
	// -v means verify unless another operation is named; with one, each -v
	// raises the verbosity (codesign -dvvv).
	if !o.verify && !o.display && !o.signSet && !o.removeSignature && verbosity > 0 {
		o.verify = true
		verbosity--
	}
	o.verbose = verbosity
	return o, nil
}

// Main implements codesign(1).
func Main(args []string, stdout, stderr io.Writer) int {
	o, err := parse(args)
	if err != nil {
		fmt.Fprintf(stderr, "codesign: %v\n%s", err, usage)
		return 1
	}
	ops := 0
	for _, b := range []bool{o.signSet, o.display, o.verify, o.removeSignature} {
		if b {
			ops++
		}
	}
	if ops != 1 || len(o.files) == 0 {
		fmt.Fprint(stderr, usage)
		return 1
	}
	code := 0
	for _, f := range o.files {
		var c int
		switch {
		case o.signSet:
			c = o.doSign(f, stderr)
		case o.display:
			c = o.doDisplay(f, stdout, stderr)
		case o.verify:
			c = o.doVerify(f, stderr)
		case o.removeSignature:
			if err := Remove(f); err != nil {
				fmt.Fprintf(stderr, "%s: %v\n", f, pathErr(err))
				c = 1
			}
		}
		if c != 0 {
			code = c
		}
	}
	return code
}

func pathErr(err error) string {
	if errors.Is(err, os.ErrNotExist) {
		return "No such file or directory"
	}
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

func (o *options) doSign(path string, stderr io.Writer) int {
	if o.identity != "-" {
		fmt.Fprintf(stderr, "%s: error: The specified item could not be found in the keychain.\n", o.identity)
		return 1
	}
	// Like codesign, only whether a signature is there matters, not
	// whether it is still valid.
	sig, err := readSignature(path)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %s\n", path, pathErr(err))
		return 1
	}
	if sig != nil && !o.force {
		fmt.Fprintf(stderr, "%s: is already signed\n", path)
		return 1
	}
	ns := Signature{Identity: "-", Runtime: o.runtime, Identifier: o.identifier}
	if ns.Identifier == "" {
		ns.Identifier = strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
	}
	if o.entitlSet {
		ent, err := os.ReadFile(o.entitlements)
		if err != nil {
			fmt.Fprintf(stderr, "%s: %s\n", o.entitlements, pathErr(err))
			return 1
		}
		v, err := plist.Decode(ent)
		if err != nil {
			fmt.Fprintf(stderr, "Failed to parse entitlements: AMFIUnserializeXML: %v\n", err)
			return 1
		}
		if _, ok := v.(*plist.Dict); !ok {
			fmt.Fprintf(stderr, "Failed to parse entitlements: the entitlements plist must be a dictionary\n")
			return 1
		}
		ns.Entitlements = ent
	}
	if err := Sign(path, ns); err != nil {
		fmt.Fprintf(stderr, "%s: %s\n", path, pathErr(err))
		return 1
	}
	if o.verbose > 0 {
		if sig != nil {
			fmt.Fprintf(stderr, "%s: replacing existing signature\n", path)
		}
		fmt.Fprintf(stderr, "%s: signed generic [%s]\n", path, ns.Identifier)
	}
	return 0
}

// check returns the signature of path, or prints why it has none that is
// valid and returns an exit code.
func check(path string, stderr io.Writer) (*Signature, int) {
	sig, hash, err := Read(path)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %s\n", path, pathErr(err))
		return nil, 1
	}
	if sig == nil {
		fmt.Fprintf(stderr, "%s: code object is not signed at all\n", path)
		return nil, 1
	}
	if sig.CodeSHA256 != hash {
		fmt.Fprintf(stderr, "%s: invalid signature (code or signature have been modified)\nIn architecture: arm64\n", path)
		return nil, 1
	}
	return sig, 0
}

func (o *options) doVerify(path string, stderr io.Writer) int {
	if _, c := check(path, stderr); c != 0 {
		return c
	}
	if o.verbose > 0 {
		fmt.Fprintf(stderr, "%s: valid on disk\n%s: satisfies its Designated Requirement\n", path, path)
	}
	return 0
}

// doDisplay shows a signature without validating it, as codesign -d does
// (-v validates): it reads the signature, not the code.
func (o *options) doDisplay(path string, stdout, stderr io.Writer) int {
	sig, err := readSignature(path)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %s\n", path, pathErr(err))
		return 1
	}
	if sig == nil {
		fmt.Fprintf(stderr, "%s: code object is not signed at all\n", path)
		return 1
	}
	abs, _ := filepath.Abs(path)
	fmt.Fprintf(stderr, "Executable=%s\n", abs)
	if o.verbose > 0 {
		flags, names := 0x2, "adhoc"
		if sig.Runtime {
			flags, names = flags|0x10000, names+",runtime"
		}
		fmt.Fprintf(stderr, "Identifier=%s\nFormat=Mach-O thin (arm64)\nCodeDirectory v=20400 size=%d flags=%#x(%s) hashes=%d+7 location=embedded\nSignature=adhoc\nInfo.plist=not bound\nTeamIdentifier=not set\n",
			sig.Identifier, 512+len(sig.Entitlements), flags, names, 16)
		if sig.Runtime {
			fmt.Fprintf(stderr, "Runtime Version=15.2.0\n")
		}
		fmt.Fprintf(stderr, "Sealed Resources=none\nInternal requirements count=0 size=12\n")
	}
	if !o.entitlSet || len(sig.Entitlements) == 0 {
		return 0
	}
	var out bytes.Buffer
	switch {
	case strings.HasPrefix(o.entitlements, ":"):
		// The legacy form prints the blob as it was signed.
		out.Write(sig.Entitlements)
	case o.xml:
		v, _ := plist.Decode(sig.Entitlements)
		enc, _ := plist.Encode(v)
		out.Write(enc)
	default:
		v, _ := plist.Decode(sig.Entitlements)
		writeBracketed(&out, v, 0)
	}
	dest := strings.TrimPrefix(o.entitlements, ":")
	if dest == "-" {
		_, _ = stdout.Write(out.Bytes())
		return 0
	}
	if err := os.WriteFile(dest, out.Bytes(), 0o644); err != nil {
		fmt.Fprintf(stderr, "%s: %s\n", dest, pathErr(err))
		return 1
	}
	return 0
}

// writeBracketed prints a plist value in the "[Dict] [Key] [Value]" form
// codesign has used for `--entitlements -` since macOS 12.
func writeBracketed(w io.Writer, v any, depth int) {
	ind := strings.Repeat("\t", depth)
	switch t := v.(type) {
	case *plist.Dict:
		fmt.Fprintf(w, "%s[Dict]\n", ind)
		keys := append([]string(nil), t.Keys...)
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(w, "%s\t[Key] %s\n%s\t[Value]\n", ind, k, ind)
			writeBracketed(w, t.Values[k], depth+2)
		}
	case []any:
		fmt.Fprintf(w, "%s[Array]\n", ind)
		for _, e := range t {
			writeBracketed(w, e, depth+1)
		}
	case bool:
		fmt.Fprintf(w, "%s[Bool] %t\n", ind, t)
	case string:
		fmt.Fprintf(w, "%s[String] %s\n", ind, t)
	case int64:
		fmt.Fprintf(w, "%s[Integer] %d\n", ind, t)
	default:
		fmt.Fprintf(w, "%s[Data] %v\n", ind, t)
	}
}
