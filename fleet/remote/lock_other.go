//go:build !unix

package remote

import "os"

// lockFile: without flock, appends are serialized within this process only.
func lockFile(*os.File) error { return nil }

func unlockFile(*os.File) {}

func tryLockFile(*os.File) (bool, error) { return true, nil }
