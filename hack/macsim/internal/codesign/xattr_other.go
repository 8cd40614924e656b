//go:build !linux

package codesign

import "errors"

var errNoXattr = errors.New("macsim stores signatures of non-executables in Linux extended attributes")

func getxattr(string, string) ([]byte, error) { return nil, nil }

func setxattr(string, string, []byte) error { return errNoXattr }

func removexattr(string, string) error { return nil }
