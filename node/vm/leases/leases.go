// Package leases finds a guest's IP address from its MAC address the way
// macOS hosts do: by reading the DHCP server's lease file
// (/var/db/dhcpd_leases, written by bootpd for Virtualization.framework's NAT
// network), with the host's ARP table as a fallback. It also writes that
// format, so the simulated driver can publish leases the real discovery code
// reads.
package leases

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// DefaultPath is where macOS's bootpd records the leases it hands out.
const DefaultPath = "/var/db/dhcpd_leases"

// ErrNotFound: no live lease (or ARP entry) exists for the MAC address.
var ErrNotFound = errors.New("no address found for MAC")

// Field is a key=value line of a lease block that this package does not
// interpret; it is kept so rewriting a file does not lose it.
type Field struct {
	Key, Value string
}

// Lease is one `{ ... }` block of a dhcpd_leases file.
type Lease struct {
	Name string
	IP   net.IP
	// HWAddress and Identifier are kept as written ("1,a:b:c:d:e:f": the
	// hardware type, a comma, then the address with octets in lowercase hex
	// without leading zeros). Use MAC for the parsed address.
	HWAddress  string
	Identifier string
	// Expiry is when the lease ends (the lease=0x<seconds since epoch> line);
	// zero when the block has no lease line.
	Expiry time.Time
	Extra  []Field
}

// New builds the lease bootpd would write for mac.
func New(name string, ip net.IP, mac net.HardwareAddr, expiry time.Time) Lease {
	hw := "1," + FormatMAC(mac)
	return Lease{Name: name, IP: ip, HWAddress: hw, Identifier: hw, Expiry: expiry}
}

// MAC is the Ethernet address of the lease's hw_address (or, failing that,
// its identifier), or nil when neither holds one.
func (l Lease) MAC() net.HardwareAddr {
	for _, v := range []string{l.HWAddress, l.Identifier} {
		typ, addr, ok := strings.Cut(v, ",")
		if !ok || typ != "1" {
			continue
		}
		if mac, err := ParseMAC(addr); err == nil {
			return mac
		}
	}
	return nil
}

// Parse reads every lease block of a dhcpd_leases file. Errors name the line.
func Parse(r io.Reader) ([]Lease, error) {
	var (
		out    []Lease
		cur    *Lease
		lineNo int
	)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		lineNo++
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "":
			continue
		case line == "{":
			if cur != nil {
				return nil, fmt.Errorf("leases: line %d: block opened inside another block", lineNo)
			}
			cur = &Lease{}
			continue
		case line == "}":
			if cur == nil {
				return nil, fmt.Errorf("leases: line %d: '}' without an open block", lineNo)
			}
			out = append(out, *cur)
			cur = nil
			continue
		case cur == nil:
			return nil, fmt.Errorf("leases: line %d: %q outside a { } block", lineNo, line)
		}
		key, value, ok := strings.Cut(line, "=")
		key, value = strings.TrimSpace(key), strings.TrimSpace(value)
		if !ok || key == "" {
			return nil, fmt.Errorf("leases: line %d: want key=value, got %q", lineNo, line)
		}
		if err := cur.set(key, value); err != nil {
			return nil, fmt.Errorf("leases: line %d: %w", lineNo, err)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("leases: line %d: %w", lineNo+1, err)
	}
	if cur != nil {
		return nil, fmt.Errorf("leases: line %d: block not closed with '}'", lineNo)
	}
	return out, nil
}

func (l *Lease) set(key, value string) error {
	switch key {
	case "name":
		l.Name = value
	case "ip_address":
		ip := net.ParseIP(value)
		if ip == nil {
			return fmt.Errorf("ip_address %q is not an IP address", value)
		}
		l.IP = ip
	case "hw_address":
		l.HWAddress = value
	case "identifier":
		l.Identifier = value
	case "lease":
		hex, ok := strings.CutPrefix(value, "0x")
		if !ok {
			return fmt.Errorf("lease %q: want 0x<hex seconds>", value)
		}
		secs, err := strconv.ParseInt(hex, 16, 64)
		if err != nil || secs < 0 {
			return fmt.Errorf("lease %q: want 0x<hex seconds>", value)
		}
		l.Expiry = time.Unix(secs, 0).UTC()
	default:
		l.Extra = append(l.Extra, Field{key, value})
	}
	return nil
}

// Format writes leases the way bootpd does: one tab-indented block each.
func Format(w io.Writer, leases []Lease) error {
	bw := bufio.NewWriter(w)
	for _, l := range leases {
		bw.WriteString("{\n")
		line := func(k, v string) {
			if v != "" {
				fmt.Fprintf(bw, "\t%s=%s\n", k, v)
			}
		}
		line("name", l.Name)
		if l.IP != nil {
			line("ip_address", l.IP.String())
		}
		line("hw_address", l.HWAddress)
		line("identifier", l.Identifier)
		if !l.Expiry.IsZero() {
			line("lease", "0x"+strconv.FormatInt(l.Expiry.Unix(), 16))
		}
		for _, f := range l.Extra {
			line(f.Key, f.Value)
		}
		bw.WriteString("}\n")
	}
	return bw.Flush()
}

// Read parses the lease file at path; a missing file holds no leases.
func Read(path string) ([]Lease, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("leases: %w", err)
	}
	defer f.Close()
	ls, err := Parse(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return ls, nil
}

// Find returns mac's newest lease that is live at now. Blocks without a
// lease line count as live but lose to any block that has one.
func Find(leases []Lease, mac net.HardwareAddr, now time.Time) (Lease, bool) {
	var (
		best  Lease
		found bool
	)
	for _, l := range leases {
		if l.IP == nil || !sameMAC(l.MAC(), mac) {
			continue
		}
		if !l.Expiry.IsZero() && !l.Expiry.After(now) {
			continue
		}
		if !found || l.Expiry.After(best.Expiry) {
			best, found = l, true
		}
	}
	return best, found
}

// Lookup returns the address of mac's newest unexpired lease in the file at
// path, or an error wrapping ErrNotFound.
func Lookup(path string, mac net.HardwareAddr) (net.IP, error) {
	ls, err := Read(path)
	if err != nil {
		return nil, err
	}
	l, ok := Find(ls, mac, time.Now())
	if !ok {
		return nil, fmt.Errorf("leases: %s in %s: %w (is the guest up and using DHCP?)", FormatMAC(mac), path, ErrNotFound)
	}
	return l.IP, nil
}

// ParseMAC reads a MAC address whose octets may lack leading zeros
// ("2:3:ab:c:d:e", as bootpd and arp write them) or have them.
func ParseMAC(s string) (net.HardwareAddr, error) {
	parts := strings.Split(s, ":")
	if len(parts) != 6 {
		return nil, fmt.Errorf("MAC address %q: want 6 octets separated by ':'", s)
	}
	mac := make(net.HardwareAddr, 6)
	for i, p := range parts {
		if len(p) == 0 || len(p) > 2 {
			return nil, fmt.Errorf("MAC address %q: octet %d is %q", s, i+1, p)
		}
		v, err := strconv.ParseUint(p, 16, 8)
		if err != nil {
			return nil, fmt.Errorf("MAC address %q: octet %d is %q", s, i+1, p)
		}
		mac[i] = byte(v)
	}
	return mac, nil
}

// FormatMAC writes mac as bootpd does: lowercase, no leading zeros.
func FormatMAC(mac net.HardwareAddr) string {
	parts := make([]string, len(mac))
	for i, b := range mac {
		parts[i] = strconv.FormatUint(uint64(b), 16)
	}
	return strings.Join(parts, ":")
}

func sameMAC(a, b net.HardwareAddr) bool {
	return len(a) > 0 && string(a) == string(b)
}
