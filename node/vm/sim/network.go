package sim

import (
	"fmt"
	"hash/fnv"
	"net"
	"time"

	"github.com/vzfleet/vzfleet/node/vm/leases"
)

// Guests get addresses in 127.77.0.0/16: on Linux every 127/8 address is
// local without configuration, so each guest can have its own address and
// serve SSH on the usual port. (On macOS the address needs an lo0 alias.)
const (
	netA, netB = 127, 77
	// hostsPerNet leaves out .0 and .255 of each /24.
	hostsPerNet = 256 * 254
	// leaseTime is bootpd's default lease length.
	leaseTime = 24 * time.Hour
)

// claimAddress picks the guest's address, derived from its MAC so a guest
// keeps its address across boots, moving on when another live lease holds
// it, and records the lease as bootpd would.
func (m *Machine) claimAddress() (net.IP, error) {
	h := fnv.New32a()
	h.Write(m.mac)
	start := int(h.Sum32() % hostsPerNet)
	var ip net.IP
	err := leases.Update(m.d.opts.LeasesPath, func(cur []leases.Lease) ([]leases.Lease, error) {
		now := time.Now()
		taken := map[string]bool{}
		var keep []leases.Lease
		for _, l := range cur {
			if string(l.MAC()) == string(m.mac) {
				continue // this guest's old lease is replaced
			}
			keep = append(keep, l)
			if l.IP != nil && (l.Expiry.IsZero() || l.Expiry.After(now)) {
				taken[l.IP.String()] = true
			}
		}
		for i := range hostsPerNet {
			n := (start + i) % hostsPerNet
			cand := net.IPv4(netA, netB, byte(n/254), byte(n%254+1)).To4()
			if !taken[cand.String()] {
				ip = cand
				break
			}
		}
		if ip == nil {
			return nil, fmt.Errorf("no free guest address in %d.%d.0.0/16", netA, netB)
		}
		return append([]leases.Lease{leases.New(m.spec.ID, ip, m.mac, now.Add(leaseTime))}, keep...), nil
	})
	if err != nil {
		return nil, fmt.Errorf("dhcp: %w", err)
	}
	return ip, nil
}
