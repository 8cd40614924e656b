// Package e2e is vzfleet's end-to-end suite. Every test runs against real
// components started by test/harness: etcd and kube-apiserver, an OCI
// registry, OpenSSH servers as Mac hosts, the Docker engine, and the built
// kubectl, fleetctl and vz-node binaries.
package e2e
