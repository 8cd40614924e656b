// Package harness starts the real components vzfleet is tested against — etcd
// and kube-apiserver (optionally kube-scheduler and kube-controller-manager)
// with generated PKI, an OCI registry, and the Docker engine — on loopback
// with free ports and private directories, and stops them again.
//
// Every component comes in two forms: a constructor returning the component
// and an error (used by the lab behind `make demo`), and a testing form ending
// in T that fails the test on error and stops the component at t.Cleanup.
// Child processes are killed when the test binary dies, even by SIGINT or
// SIGKILL, so a failed or interrupted run leaves no daemon behind.
package harness
