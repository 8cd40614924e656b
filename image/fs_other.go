//go:build !linux && !darwin

package image

import (
	"errors"
	"os"
)

var errUnsupported = errors.New("not supported on this OS")

func freeSpace(string) (int64, error) { return 0, errUnsupported }

func allocated(fi os.FileInfo) int64 { return fi.Size() }

func lockFile(*os.File) (bool, error) { return true, nil }

func punchHole(*os.File, int64, int64) error { return errUnsupported }

func startWriteback(*os.File, int64, int64) {}

func openDirect(string) *os.File { return nil }

func holeOnly(*os.File, int64, int64) bool { return false }
