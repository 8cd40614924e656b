//go:build tools

// Package tools pins metrics-server, which serves metrics.k8s.io from the
// nodes' /metrics/resource so `kubectl top` works in the tests and the lab.
// It has its own module because it pins older Kubernetes libraries.
package tools

import _ "sigs.k8s.io/metrics-server/cmd/metrics-server"
