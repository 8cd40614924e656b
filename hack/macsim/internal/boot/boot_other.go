//go:build !linux

package boot

import "errors"

// Apply needs Linux namespaces.
func Apply(*Config) error {
	return errors.New("macsim boot needs Linux mount and UTS namespaces")
}
