package boot

import (
	"fmt"
	"os"
	"strings"
	"syscall"
)

// Apply makes the mounts and sets the host name. It must run in a private
// mount namespace and its own UTS namespace, or it would change the machine.
func Apply(c *Config) error {
	// Nothing mounted here may leak to the parent namespace.
	if err := syscall.Mount("", "/", "", syscall.MS_REC|syscall.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("making / private: %w", err)
	}
	for _, m := range c.Mounts {
		switch m.Kind {
		case "bind":
			if err := syscall.Mount(m.Source, m.Target, "", syscall.MS_BIND|syscall.MS_REC, ""); err != nil {
				return fmt.Errorf("bind-mounting %s over %s: %w", m.Source, m.Target, err)
			}
		case "overlay":
			opts := "lowerdir=" + strings.Join(m.Lower, ":")
			if err := syscall.Mount("overlay", m.Target, "overlay", syscall.MS_RDONLY, opts); err != nil {
				return fmt.Errorf("overlay at %s (%s): %w", m.Target, opts, err)
			}
		default:
			return fmt.Errorf("mount of %s: unknown kind %q", m.Target, m.Kind)
		}
	}
	if c.Hostname != "" {
		if err := syscall.Sethostname([]byte(c.Hostname)); err != nil {
			return fmt.Errorf("setting the host name %q (needs its own UTS namespace): %w", c.Hostname, err)
		}
	}
	return os.Chdir("/")
}
