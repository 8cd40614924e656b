package leases

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite golden files")

func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (run with -update after checking):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

func mustMAC(t testing.TB, s string) net.HardwareAddr {
	t.Helper()
	mac, err := ParseMAC(s)
	if err != nil {
		t.Fatal(err)
	}
	return mac
}

// TestParseGolden parses every testdata/parse/*.leases file and compares the
// result (as JSON, then as re-formatted text) with its golden files.
func TestParseGolden(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("testdata/parse/*.leases")
	if err != nil || len(files) == 0 {
		t.Fatalf("no inputs: %v", err)
	}
	for _, in := range files {
		t.Run(filepath.Base(in), func(t *testing.T) {
			t.Parallel()
			ls, err := Read(in)
			if err != nil {
				t.Fatal(err)
			}
			type view struct {
				Lease
				MAC string
			}
			var vs []view
			for _, l := range ls {
				vs = append(vs, view{l, l.MAC().String()})
			}
			js, err := json.MarshalIndent(vs, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			golden(t, strings.TrimSuffix(in, ".leases")+".json", append(js, '\n'))
			var buf bytes.Buffer
			if err := Format(&buf, ls); err != nil {
				t.Fatal(err)
			}
			golden(t, strings.TrimSuffix(in, ".leases")+".formatted", buf.Bytes())
		})
	}
}

func TestParseErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"{\nname=a\n", "line 2: block not closed"},
		{"}\n", "line 1: '}' without an open block"},
		{"name=a\n", "line 1: \"name=a\" outside"},
		{"{\n{\n", "line 2: block opened inside"},
		{"{\nnoequals\n}\n", "line 2: want key=value"},
		{"{\n=v\n}\n", "line 2: want key=value"},
		{"{\nip_address=300.1.1.1\n}\n", "line 2: ip_address \"300.1.1.1\""},
		{"{\nlease=12\n}\n", "line 2: lease \"12\""},
		{"{\nlease=0xzz\n}\n", "line 2: lease \"0xzz\""},
		{"{\nlease=0xffffffffffffffff\n}\n", "line 2: lease"},
	} {
		_, err := Parse(strings.NewReader(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%q) = %v, want error containing %q", tc.in, err, tc.want)
		}
	}
}

func TestParseMAC(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"2:3:ab:c:d:e", "02:03:ab:0c:0d:0e", true},
		{"02:03:AB:0C:0D:0E", "02:03:ab:0c:0d:0e", true},
		{"0:0:0:0:0:0", "00:00:00:00:00:00", true},
		{"2:3:ab:c:d", "", false},
		{"2:3:ab:c:d:100", "", false},
		{"2::ab:c:d:e", "", false},
		{"g:3:ab:c:d:e", "", false},
	} {
		mac, err := ParseMAC(tc.in)
		if (err == nil) != tc.ok || (tc.ok && mac.String() != tc.want) {
			t.Errorf("ParseMAC(%q) = %v, %v; want %q ok=%v", tc.in, mac, err, tc.want, tc.ok)
		}
		if tc.ok {
			if back, _ := ParseMAC(FormatMAC(mac)); back.String() != tc.want {
				t.Errorf("FormatMAC round trip of %q: %q", tc.in, FormatMAC(mac))
			}
		}
	}
	if got := FormatMAC(mustMAC(t, "02:03:ab:0c:0d:0e")); got != "2:3:ab:c:d:e" {
		t.Errorf("FormatMAC = %q, want bootpd's 2:3:ab:c:d:e", got)
	}
}

func TestFind(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_700_000_000, 0)
	mac := mustMAC(t, "02:03:ab:0c:0d:0e")
	other := mustMAC(t, "02:03:ab:0c:0d:0f")
	l := func(ip string, m net.HardwareAddr, exp time.Duration) Lease {
		var e time.Time
		if exp != 0 {
			e = now.Add(exp)
		}
		return New("vm", net.ParseIP(ip), m, e)
	}
	for _, tc := range []struct {
		name   string
		leases []Lease
		want   string
	}{
		{"none", nil, ""},
		{"other MAC only", []Lease{l("10.0.0.1", other, time.Hour)}, ""},
		{"expired", []Lease{l("10.0.0.1", mac, -time.Second)}, ""},
		{"expires now", []Lease{l("10.0.0.1", mac, time.Nanosecond)}, "10.0.0.1"},
		{"newest wins", []Lease{l("10.0.0.1", mac, time.Hour), l("10.0.0.2", mac, 2*time.Hour), l("10.0.0.3", mac, -time.Hour)}, "10.0.0.2"},
		{"no lease line loses", []Lease{l("10.0.0.4", mac, 0), l("10.0.0.5", mac, time.Minute)}, "10.0.0.5"},
		{"no lease line alone", []Lease{l("10.0.0.4", mac, 0)}, "10.0.0.4"},
		{"identifier only", []Lease{{IP: net.ParseIP("10.0.0.6"), HWAddress: "ff,1:2", Identifier: "1,2:3:ab:c:d:e", Expiry: now.Add(time.Hour)}}, "10.0.0.6"},
	} {
		got, ok := Find(tc.leases, mac, now)
		if tc.want == "" {
			if ok {
				t.Errorf("%s: found %v, want nothing", tc.name, got.IP)
			}
			continue
		}
		if !ok || got.IP.String() != tc.want {
			t.Errorf("%s: got %v (found=%v), want %s", tc.name, got.IP, ok, tc.want)
		}
	}
}

func TestLookupPutRelease(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "db", "dhcpd_leases")
	mac := mustMAC(t, "2:3:ab:c:d:e")
	if _, err := Lookup(path, mac); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Lookup on a missing file = %v, want ErrNotFound", err)
	}
	exp := time.Now().Add(time.Hour)
	if err := Put(path, New("a", net.ParseIP("127.77.0.2"), mac, exp)); err != nil {
		t.Fatal(err)
	}
	if err := Put(path, New("a", net.ParseIP("127.77.0.3"), mac, exp)); err != nil {
		t.Fatal(err)
	}
	ip, err := Lookup(path, mustMAC(t, "02:03:AB:0C:0D:0E"))
	if err != nil || ip.String() != "127.77.0.3" {
		t.Fatalf("Lookup = %v, %v; want the replacing lease 127.77.0.3", ip, err)
	}
	ls, err := Read(path)
	if err != nil || len(ls) != 1 {
		t.Fatalf("Put kept %d leases for one MAC (%v)", len(ls), err)
	}
	raw, _ := os.ReadFile(path)
	if !strings.Contains(string(raw), "hw_address=1,2:3:ab:c:d:e\n") {
		t.Errorf("file not in bootpd's MAC style:\n%s", raw)
	}
	if err := Release(path, mac); err != nil {
		t.Fatal(err)
	}
	if _, err := Lookup(path, mac); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Lookup after Release = %v, want ErrNotFound", err)
	}
}

// TestPutConcurrent: writers racing on one file must not lose each other's
// leases (the lock serialises read-modify-write).
func TestPutConcurrent(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "dhcpd_leases")
	const n = 20
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mac := net.HardwareAddr{2, 0, 0, 0, 0, byte(i)}
			errs <- Put(path, New(fmt.Sprint(i), net.IPv4(127, 77, 0, byte(i+1)), mac, time.Now().Add(time.Hour)))
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	ls, err := Read(path)
	if err != nil || len(ls) != n {
		t.Fatalf("got %d leases (%v), want %d", len(ls), err, n)
	}
}

func TestParseARP(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		file  string
		parse func(*os.File) ([]ARPEntry, error)
		want  []string
	}{
		{"testdata/arp/proc_net_arp", func(f *os.File) ([]ARPEntry, error) { return ParseProcARP(f) },
			[]string{"192.168.1.1 00:11:22:33:44:55 eth0", "10.0.2.7 02:03:ab:0c:0d:0e br0"}},
		{"testdata/arp/arp-an.txt", func(f *os.File) ([]ARPEntry, error) { return ParseArpAn(f) },
			[]string{"192.168.64.2 3e:a3:05:e1:1b:08 bridge100", "192.168.1.255 ff:ff:ff:ff:ff:ff en0", "224.0.0.251 01:00:5e:00:00:fb en0"}},
	} {
		f, err := os.Open(tc.file)
		if err != nil {
			t.Fatal(err)
		}
		es, err := tc.parse(f)
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", tc.file, err)
		}
		var got []string
		for _, e := range es {
			got = append(got, fmt.Sprintf("%s %s %s", e.IP, e.MAC, e.Interface))
		}
		if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
			t.Errorf("%s:\ngot  %q\nwant %q", tc.file, got, tc.want)
		}
	}
	if _, err := ParseArpAn(strings.NewReader("garbage line here\n")); err == nil {
		t.Error("ParseArpAn accepted garbage")
	}
	if _, err := ParseProcARP(strings.NewReader("hdr\n1.2.3.4 0x1 0x2\n")); err == nil {
		t.Error("ParseProcARP accepted a short line")
	}
}

// TestResolveFallsBackToARP: a MAC without a lease is looked up in the real
// ARP table; an unknown one fails with ErrNotFound from both sources.
func TestResolveFallsBackToARP(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "dhcpd_leases")
	_, err := Resolve(t.Context(), path, mustMAC(t, "2:0:0:0:0:99"))
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "arp table") {
		t.Fatalf("Resolve of an unknown MAC = %v, want ErrNotFound naming both sources", err)
	}
	table, err := arpTable(t.Context())
	if err != nil {
		t.Fatalf("reading the host's ARP table: %v", err)
	}
	for _, e := range table {
		if e.IP.To4() == nil {
			continue
		}
		ip, err := Resolve(t.Context(), path, e.MAC)
		if err != nil || ip == nil {
			t.Fatalf("Resolve(%s) from ARP = %v, %v; want an address", e.MAC, ip, err)
		}
		return
	}
	t.Log("host ARP table has no complete IPv4 entry; only the miss path ran")
}

func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/parse/*.leases")
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("{\n}\n"))
	f.Add([]byte("{\nlease=0x7fffffffffffffff\nhw_address=1,:::::\n}"))
	f.Fuzz(func(t *testing.T, in []byte) {
		ls, err := Parse(bytes.NewReader(in))
		if err != nil {
			return
		}
		for _, l := range ls {
			l.MAC()
		}
		// What was accepted formats to text that parses back to the same
		// leases, and formatting is stable from then on.
		var a, b bytes.Buffer
		if err := Format(&a, ls); err != nil {
			t.Fatal(err)
		}
		again, err := Parse(bytes.NewReader(a.Bytes()))
		if err != nil {
			t.Fatalf("formatted output does not parse: %v\n%s", err, a.Bytes())
		}
		if err := Format(&b, again); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a.Bytes(), b.Bytes()) {
			t.Fatalf("format not stable:\n%s\n---\n%s", a.Bytes(), b.Bytes())
		}
	})
}

func FuzzParseARP(f *testing.F) {
	for _, p := range []string{"testdata/arp/proc_net_arp", "testdata/arp/arp-an.txt"} {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		for _, parse := range []func([]byte) ([]ARPEntry, error){
			func(b []byte) ([]ARPEntry, error) { return ParseProcARP(bytes.NewReader(b)) },
			func(b []byte) ([]ARPEntry, error) { return ParseArpAn(bytes.NewReader(b)) },
		} {
			es, err := parse(in)
			if err != nil {
				continue
			}
			for _, e := range es {
				if e.IP == nil || len(e.MAC) != 6 {
					t.Fatalf("accepted entry without IP or MAC: %+v", e)
				}
			}
		}
	})
}
