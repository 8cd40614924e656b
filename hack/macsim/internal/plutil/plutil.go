// Package plutil stands in for macOS plutil(1): -lint, -p and -extract.
package plutil

import (
	"encoding/base64"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/vzfleet/vzfleet/hack/macsim/internal/plist"
)

const usage = `usage: plutil <command> <options> <file>
Commands supported by macsim:
	-lint                         check the property list files for syntax errors
	-p                            print property list in a human-readable fashion
	-extract keypath fmt -o - f   print the value at keypath (fmt: raw, xml1)
`

// Main implements plutil(1).
func Main(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 1
	}
	switch args[0] {
	case "-lint":
		return lint(args[1:], stdout, stderr)
	case "-p":
		if len(args) != 2 {
			fmt.Fprint(stderr, usage)
			return 1
		}
		v, code := read(args[1], stderr)
		if code != 0 {
			return code
		}
		printHuman(stdout, v, 0)
		fmt.Fprintln(stdout)
		return 0
	case "-extract":
		return extract(args[1:], stdout, stderr)
	case "-help", "-h":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "unrecognized option: %s\n%s", args[0], usage)
	return 1
}

func read(path string, stderr io.Writer) (any, int) {
	data, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintf(stderr, "%s: file does not exist or is not readable or is not a regular file (Error Domain=NSCocoaErrorDomain Code=260)\n", path)
		return nil, 1
	}
	v, err := plist.Decode(data)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", path, err)
		return nil, 1
	}
	return v, 0
}

func lint(files []string, stdout, stderr io.Writer) int {
	var paths []string
	for _, f := range files {
		if f == "-s" {
			continue
		}
		paths = append(paths, f)
	}
	if len(paths) == 0 {
		fmt.Fprint(stderr, usage)
		return 1
	}
	code := 0
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			fmt.Fprintf(stdout, "%s: file does not exist or is not readable or is not a regular file (Error Domain=NSCocoaErrorDomain Code=260)\n", p)
			code = 1
			continue
		}
		if _, err := plist.Decode(data); err != nil {
			fmt.Fprintf(stdout, "%s: %v\n", p, err)
			code = 1
			continue
		}
		fmt.Fprintf(stdout, "%s: OK\n", p)
	}
	return code
}

func extract(args []string, stdout, stderr io.Writer) int {
	if len(args) < 3 {
		fmt.Fprint(stderr, usage)
		return 1
	}
	keypath, format, file := args[0], args[1], args[len(args)-1]
	v, code := read(file, stderr)
	if code != 0 {
		return code
	}
	for _, k := range strings.Split(keypath, ".") {
		switch t := v.(type) {
		case *plist.Dict:
			next, ok := t.Get(k)
			if !ok {
				v = nil
			} else {
				v = next
			}
		case []any:
			i, err := strconv.Atoi(k)
			if err != nil || i < 0 || i >= len(t) {
				v = nil
			} else {
				v = t[i]
			}
		default:
			v = nil
		}
		if v == nil {
			fmt.Fprintf(stderr, "%s: Could not extract value, error: No value at that key path or invalid key path: %s\n", file, keypath)
			return 1
		}
	}
	switch format {
	case "raw":
		switch t := v.(type) {
		case *plist.Dict:
			fmt.Fprintln(stdout, len(t.Keys))
		case []any:
			fmt.Fprintln(stdout, len(t))
		case []byte:
			fmt.Fprintln(stdout, base64.StdEncoding.EncodeToString(t))
		case time.Time:
			fmt.Fprintln(stdout, t.Format(time.RFC3339))
		default:
			fmt.Fprintln(stdout, t)
		}
	case "xml1":
		enc, err := plist.Encode(v)
		if err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", file, err)
			return 1
		}
		stdout.Write(enc)
	default:
		fmt.Fprintf(stderr, "macsim's plutil -extract supports the raw and xml1 formats, not %q\n", format)
		return 1
	}
	return 0
}

func printHuman(w io.Writer, v any, depth int) {
	ind := strings.Repeat("  ", depth)
	switch t := v.(type) {
	case *plist.Dict:
		fmt.Fprint(w, "{\n")
		keys := append([]string(nil), t.Keys...)
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(w, "%s  %q => ", ind, k)
			printHuman(w, t.Values[k], depth+1)
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "%s}", ind)
	case []any:
		fmt.Fprint(w, "[\n")
		for i, e := range t {
			fmt.Fprintf(w, "%s  %d => ", ind, i)
			printHuman(w, e, depth+1)
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "%s]", ind)
	case string:
		fmt.Fprintf(w, "%q", t)
	case []byte:
		fmt.Fprintf(w, "{length = %d, bytes = 0x%x}", len(t), t)
	case time.Time:
		fmt.Fprint(w, t.Format("2006-01-02 15:04:05 +0000"))
	default:
		fmt.Fprint(w, t)
	}
}
