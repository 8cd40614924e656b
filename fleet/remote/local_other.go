//go:build !unix

package remote

import (
	"io/fs"
	"os/exec"
)

func setProcessGroup(*exec.Cmd) {}

func exitStatus(e *exec.ExitError) (code int, signal string) { return e.ExitCode(), "" }

func fileOwner(fs.FileInfo) (uid, gid uint32) { return 0, 0 }

func deviceInode(fs.FileInfo) (dev, ino uint64) { return 0, 0 }

func detach(*exec.Cmd) {}
