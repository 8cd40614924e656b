package node

import "path/filepath"

// On Linux only the simulator can run.
const defaultDriver = "sim"

// defaultLeasesPath is where the sim driver records guests' DHCP leases.
var defaultLeasesPath = filepath.Join("/var/lib/vz-node", "dhcpd_leases")

func defaultCacheDir() string { return "/var/cache/vz-node" }

func defaultStateDir() string { return "/var/lib/vz-node" }
