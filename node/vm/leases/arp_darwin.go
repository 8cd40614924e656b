package leases

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"time"
)

// arpTimeout bounds running the arp command.
const arpTimeout = 5 * time.Second

func arpTable(ctx context.Context) ([]ARPEntry, error) {
	ctx, cancel := context.WithTimeout(ctx, arpTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, "/usr/sbin/arp", "-an").Output()
	if err != nil {
		return nil, fmt.Errorf("arp -an: %w", err)
	}
	return ParseArpAn(bytes.NewReader(out))
}
