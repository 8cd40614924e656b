package sshd

import "syscall"

// procAttr puts sshd in its own process group and has the kernel kill it
// if the test binary dies without running its cleanups (a test timeout).
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
