package remote

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"slices"

	"github.com/pkg/sftp"
)

// finishFS is what putting temp files in place needs of a file system: the
// local one (osFS) or a host's over SFTP (sftpFS). Errors are
// *fs.PathError, as the os package's.
type finishFS interface {
	Stat(name string) (fs.FileInfo, error)
	Chmod(name string, mode fs.FileMode) error
	Chown(name string, uid, gid int) error // -1 keeps that id
	Remove(name string) error
	Link(oldname, newname string) error
	Rename(oldname, newname string) error // atomic, replacing newname
	MkdirAll(dir string) error
	ReadDir(dir string) ([]fs.DirEntry, error)
}

// finishOn does for one file what batchFinalizeScript does: mode and owner
// on the temp file, the target kept as .prev (a hard link), then the temp
// file renamed over the target.
func finishOn(fsys finishFS, f finishing) error {
	target, err := fsys.Stat(f.target)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	exists := err == nil
	if exists && target.IsDir() {
		return fmt.Errorf("%s %w", f.target, errIsDirectory)
	}
	if err := fsys.Chmod(f.tmp, f.mode); err != nil {
		return err
	}
	if f.uid >= 0 || f.gid >= 0 {
		if err := fsys.Chown(f.tmp, f.uid, f.gid); err != nil {
			return err
		}
	}
	if f.keep && exists && target.Mode().IsRegular() {
		prev := f.target + ".prev"
		if err := fsys.Remove(prev); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		if err := fsys.Link(f.target, prev); err != nil {
			return err
		}
	}
	return fsys.Rename(f.tmp, f.target)
}

// prepareOn does what prepareScript does: it makes dirs and clean, and
// removes from clean the temp files interrupted uploads left.
func prepareOn(fsys finishFS, dirs, clean []string) error {
	for _, d := range append(slices.Clone(dirs), clean...) {
		if err := fsys.MkdirAll(d); err != nil {
			return err
		}
	}
	for _, d := range clean {
		entries, err := fsys.ReadDir(d)
		if err != nil {
			return err
		}
		for _, e := range entries {
			if e.Type().IsRegular() && isTemp(e.Name()) {
				if err := fsys.Remove(path.Join(d, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
					return err
				}
			}
		}
	}
	return nil
}

// osFS is the local file system, as this process's user.
type osFS struct{}

func (osFS) Stat(name string) (fs.FileInfo, error)     { return os.Stat(name) }
func (osFS) Chmod(name string, mode fs.FileMode) error { return os.Chmod(name, mode) }
func (osFS) Chown(name string, uid, gid int) error     { return os.Chown(name, uid, gid) }
func (osFS) Remove(name string) error                  { return os.Remove(name) }
func (osFS) Link(oldname, newname string) error        { return os.Link(oldname, newname) }
func (osFS) Rename(oldname, newname string) error      { return os.Rename(oldname, newname) }
func (osFS) MkdirAll(dir string) error                 { return os.MkdirAll(dir, 0o755) }
func (osFS) ReadDir(dir string) ([]fs.DirEntry, error) { return os.ReadDir(dir) }

// sftpFS is a host's file system over SFTP (OpenSSH's hardlink and
// posix-rename extensions needed).
type sftpFS struct{ sc *sftp.Client }

func pathErr(op, name string, err error) error {
	if err == nil {
		return nil
	}
	return &fs.PathError{Op: op, Path: name, Err: err}
}

func (s sftpFS) Stat(name string) (fs.FileInfo, error) {
	fi, err := s.sc.Stat(name)
	return fi, pathErr("stat", name, err)
}

func (s sftpFS) Chmod(name string, mode fs.FileMode) error {
	return pathErr("chmod", name, s.sc.Chmod(name, mode))
}

// Chown fills in an id of -1 from the file: SFTP always sets both.
func (s sftpFS) Chown(name string, uid, gid int) error {
	if uid < 0 || gid < 0 {
		fi, err := s.Stat(name)
		if err != nil {
			return err
		}
		st, ok := fi.Sys().(*sftp.FileStat)
		if !ok {
			return pathErr("chown", name, errors.New("the server sent no owner"))
		}
		if uid < 0 {
			uid = int(st.UID)
		}
		if gid < 0 {
			gid = int(st.GID)
		}
	}
	return pathErr("chown", name, s.sc.Chown(name, uid, gid))
}

func (s sftpFS) Remove(name string) error { return pathErr("remove", name, s.sc.Remove(name)) }

func (s sftpFS) Link(oldname, newname string) error {
	return pathErr("link", newname, s.sc.Link(oldname, newname))
}

func (s sftpFS) Rename(oldname, newname string) error {
	return pathErr("rename", oldname, s.sc.PosixRename(oldname, newname))
}

func (s sftpFS) MkdirAll(dir string) error { return pathErr("mkdir", dir, s.sc.MkdirAll(dir)) }

func (s sftpFS) ReadDir(dir string) ([]fs.DirEntry, error) {
	infos, err := s.sc.ReadDir(dir)
	if err != nil {
		return nil, pathErr("readdir", dir, err)
	}
	entries := make([]fs.DirEntry, len(infos))
	for i, fi := range infos {
		entries[i] = fs.FileInfoToDirEntry(fi)
	}
	return entries, nil
}
