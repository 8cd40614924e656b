package leases

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"strings"
)

// ARPEntry is one complete entry of the host's ARP table.
type ARPEntry struct {
	IP        net.IP
	MAC       net.HardwareAddr
	Interface string
}

// ParseProcARP reads Linux's /proc/net/arp. Incomplete entries (flags 0x0)
// are skipped.
func ParseProcARP(r io.Reader) ([]ARPEntry, error) {
	var out []ARPEntry
	sc := bufio.NewScanner(r)
	lineNo := 0
	for sc.Scan() {
		lineNo++
		f := strings.Fields(sc.Text())
		if lineNo == 1 || len(f) == 0 {
			continue // header
		}
		if len(f) < 6 {
			return nil, fmt.Errorf("arp table: line %d: want 6 columns, got %q", lineNo, sc.Text())
		}
		if f[2] == "0x0" {
			continue
		}
		ip := net.ParseIP(f[0])
		mac, err := ParseMAC(f[3])
		if ip == nil || err != nil {
			return nil, fmt.Errorf("arp table: line %d: cannot read %q", lineNo, sc.Text())
		}
		out = append(out, ARPEntry{IP: ip, MAC: mac, Interface: f[5]})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("arp table: %w", err)
	}
	return out, nil
}

// ParseArpAn reads the output of BSD/macOS `arp -an`:
//
//	? (192.168.64.2) at 3e:a3:5:e1:1b:8 on bridge100 ifscope [bridge]
//
// Incomplete entries are skipped.
func ParseArpAn(r io.Reader) ([]ARPEntry, error) {
	var out []ARPEntry
	sc := bufio.NewScanner(r)
	lineNo := 0
	for sc.Scan() {
		lineNo++
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		if len(f) < 4 || f[2] != "at" || !strings.HasPrefix(f[1], "(") || !strings.HasSuffix(f[1], ")") {
			return nil, fmt.Errorf("arp -an: line %d: cannot read %q", lineNo, sc.Text())
		}
		if f[3] == "(incomplete)" {
			continue
		}
		ip := net.ParseIP(strings.TrimSuffix(strings.TrimPrefix(f[1], "("), ")"))
		mac, err := ParseMAC(f[3])
		if ip == nil || err != nil {
			return nil, fmt.Errorf("arp -an: line %d: cannot read %q", lineNo, sc.Text())
		}
		e := ARPEntry{IP: ip, MAC: mac}
		if len(f) >= 6 && f[4] == "on" {
			e.Interface = f[5]
		}
		out = append(out, e)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("arp -an: %w", err)
	}
	return out, nil
}

// LookupARP finds mac's IPv4 address in the host's ARP table.
func LookupARP(ctx context.Context, mac net.HardwareAddr) (net.IP, error) {
	table, err := arpTable(ctx)
	if err != nil {
		return nil, err
	}
	for _, e := range table {
		if sameMAC(e.MAC, mac) && e.IP.To4() != nil {
			return e.IP, nil
		}
	}
	return nil, fmt.Errorf("arp table: %s: %w", FormatMAC(mac), ErrNotFound)
}

// Resolve finds mac's address from the lease file at path, falling back to
// the ARP table (a guest with a static address, or a bridged guest whose
// DHCP server is elsewhere, only shows up there).
func Resolve(ctx context.Context, path string, mac net.HardwareAddr) (net.IP, error) {
	ip, leaseErr := Lookup(path, mac)
	if leaseErr == nil {
		return ip, nil
	}
	ip, arpErr := LookupARP(ctx, mac)
	if arpErr == nil {
		return ip, nil
	}
	return nil, fmt.Errorf("resolve %s: %w; %w", FormatMAC(mac), leaseErr, arpErr)
}
