//go:build tools

// Package tools pins etcd, kept in its own module because its dependency
// graph does not mix with Kubernetes's.
package tools

import (
	_ "go.etcd.io/etcd/etcdctl/v3"
	_ "go.etcd.io/etcd/server/v3"
)
