package node

import "path/filepath"

// On macOS guests run on Virtualization.framework.
const defaultDriver = "vz"

// defaultLeasesPath is where macOS's bootpd records NAT guests' leases.
var defaultLeasesPath = filepath.Join(defaultLeasesDir, "dhcpd_leases")

func defaultCacheDir() string {
	return filepath.Join(homeDir(), "Library", "Caches", "dev.vzfleet.vz-node")
}

func defaultStateDir() string {
	return filepath.Join(homeDir(), "Library", "Application Support", "dev.vzfleet.vz-node")
}
