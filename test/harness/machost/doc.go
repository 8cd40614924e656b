// Package machost starts simulated Mac hosts for fleetctl's end-to-end tests
// and `make demo`: real OpenSSH servers (Debian's sshd), each with
//
//   - its own IP address: a network namespace per host with a veth into a
//     bridge in the root namespace (10.213.N.0/24 by default), sshd on port
//     22 of that address;
//   - its own filesystem view of the paths fleetctl writes: per-host
//     directories bind-mounted over /usr/local/bin, /Library, /var/db, ...
//     in a private mount namespace, so an inventory with macOS's default
//     paths works unchanged, and each host's files can be inspected from the
//     test through Host.Path;
//   - its own host name (a UTS namespace);
//   - the macOS commands fleetctl runs — sw_vers, uname (Darwin, arm64),
//     sysctl, scutil, codesign, plutil and launchctl — from hack/macsim,
//     laid over /usr/bin and /usr/sbin, and a launchd that really starts,
//     stops and restarts LaunchDaemons. Programs it starts (the installed
//     vz-node) run in the host's namespaces and see the host's files.
//
// What each host has of its own (Host.Path maps these to the test machine):
//
//	/usr/local/bin, /Library (LaunchDaemons, LaunchAgents, Logs,
//	Application Support, Caches, Preferences), /var/db, /var/root,
//	/etc/vzfleet, /var/lib/vz-node, /var/cache/vz-node    own directories
//	/var/macsim   host.json (sw_vers/sysctl answers), launchd.sock,
//	              launchd.log, launchd/disabled.json
//	/etc/group (plus wheel, gid 0), /etc/hosts (the lab's hosts),
//	/etc/pam.d/sshd (account checks only)                  own files
//	/usr/bin, /usr/sbin (so /bin, /sbin)    read-only, with the stand-ins
//
// Everything else (/tmp, /root, /etc, /usr/lib, ...) is the machine's.
//
// ForwardLoopback makes services that listen on the test machine's loopback
// (kube-apiserver, the registry) reachable at the same 127.0.0.1 address
// from inside every host, so certificates for 127.0.0.1 stay valid.
//
// A Lab needs root (namespaces, mounts, sshd), ip, unshare, nsenter and
// Debian's openssh-server; iptables and tc are used when present. Every
// daemon is killed when the test binary dies, and a new lab first removes
// what a killed run left in its subnet.
package machost
