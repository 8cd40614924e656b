//go:build !linux

package harness

import "errors"

// newDockerBridge needs Linux's ip(8), as dockerd needs Linux.
func newDockerBridge() (string, func(), error) {
	return "", nil, errors.New("the harness starts dockerd on Linux only")
}
