//go:build tools

// Package tools pins the oras CLI that bench/image compares the pull engine
// and push with (`oras pull` / `oras push` of the same artifact).
package tools

import _ "oras.land/oras/cmd/oras"
