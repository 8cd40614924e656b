package codesign

import (
	"errors"
	"syscall"
)

func getxattr(path, name string) ([]byte, error) {
	n, err := syscall.Getxattr(path, name, nil)
	if err != nil {
		if errors.Is(err, syscall.ENODATA) {
			return nil, nil
		}
		return nil, err
	}
	buf := make([]byte, n)
	n, err = syscall.Getxattr(path, name, buf)
	if err != nil {
		return nil, err
	}
	return buf[:n], nil
}

func setxattr(path, name string, value []byte) error {
	return syscall.Setxattr(path, name, value, 0)
}

func removexattr(path, name string) error {
	err := syscall.Removexattr(path, name)
	if errors.Is(err, syscall.ENODATA) {
		return nil
	}
	return err
}
