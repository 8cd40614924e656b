package leases

import (
	"context"
	"fmt"
	"os"
)

// procARP is the kernel's ARP table.
const procARP = "/proc/net/arp"

func arpTable(context.Context) ([]ARPEntry, error) {
	f, err := os.Open(procARP)
	if err != nil {
		return nil, fmt.Errorf("arp table: %w", err)
	}
	defer f.Close()
	return ParseProcARP(f)
}
