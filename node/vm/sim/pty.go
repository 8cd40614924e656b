package sim

import (
	"os"

	"golang.org/x/sys/unix"
)

// control runs fn on f's descriptor without switching f to blocking mode
// (as Fd would).
func control(f *os.File, fn func(fd int) error) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

// setWinsize tells the terminal (and so the guest's programs) its size.
func setWinsize(master *os.File, cols, rows uint32) error {
	return control(master, func(fd int) error {
		return unix.IoctlSetWinsize(fd, unix.TIOCSWINSZ, &unix.Winsize{Row: uint16(rows), Col: uint16(cols)})
	})
}
