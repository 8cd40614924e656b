package supervisor

import "golang.org/x/sys/unix"

// dupOnto makes fd to refer to the file that from refers to.
func dupOnto(from, to int) error { return unix.Dup2(from, to) }
