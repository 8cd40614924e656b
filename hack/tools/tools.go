//go:build tools

// Package tools pins the Kubernetes control-plane commands that the test
// harness and the lab run. They are built from source at one release so the
// tests need nothing beyond the Go module proxy.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
