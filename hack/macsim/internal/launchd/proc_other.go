//go:build !linux

package launchd

import (
	"os/exec"
	"syscall"
)

func setDeathSignal(*syscall.SysProcAttr) {}

func start(cmd *exec.Cmd) error { return cmd.Start() }

func setCredential(*exec.Cmd, string) error { return nil }
