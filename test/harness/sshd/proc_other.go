//go:build !linux

package sshd

import "syscall"

// procAttr puts sshd in its own process group.
func procAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }
