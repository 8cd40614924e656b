package apply

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/vzfleet/vzfleet/inventory"
)

// floorGo uploads every host's files with x/crypto/ssh and pkg/sftp
// (concurrent writes, inFlight of them per file; 0: pkg/sftp's default,
// 64), all hosts at once: one connection per host, the parent directories
// made, each file written and chmod-ed. Nothing is verified, nothing is
// atomic, nothing restarts: the transfer alone, on the same transport
// fleetctl uses (which keeps 16 writes in flight).
func (f *fixture) floorGo(inFlight int) error {
	return f.eachHost(func(h inventory.Host, c *ssh.Client) error {
		opts := []sftp.ClientOption{sftp.UseConcurrentWrites(true)}
		if inFlight > 0 {
			opts = append(opts, sftp.MaxConcurrentRequestsPerFile(inFlight))
		}
		sc, err := sftp.NewClient(c, opts...)
		if err != nil {
			return err
		}
		defer sc.Close()
		made := map[string]bool{}
		for _, mf := range f.installed[h.Name] {
			if d := path.Dir(mf.Path); !made[d] {
				if err := sc.MkdirAll(d); err != nil {
					return fmt.Errorf("%s: mkdir %s: %w", h.Name, d, err)
				}
				made[d] = true
			}
			w, err := sc.Create(mf.Path)
			if err != nil {
				return fmt.Errorf("%s: %s: %w", h.Name, mf.Path, err)
			}
			if _, err := w.ReadFrom(bytes.NewReader(mf.Content)); err != nil {
				w.Close()
				return fmt.Errorf("%s: %s: %w", h.Name, mf.Path, err)
			}
			if err := w.Chmod(mf.Mode); err != nil {
				w.Close()
				return err
			}
			if err := w.Close(); err != nil {
				return err
			}
		}
		return nil
	})
}

// eachHost runs fn on every host at once, each with an SSH connection of
// its own, and joins their errors.
func (f *fixture) eachHost(fn func(h inventory.Host, c *ssh.Client) error) error {
	errs := make([]error, len(f.hosts))
	var wg sync.WaitGroup
	for i, h := range f.hosts {
		wg.Go(func() {
			c, err := f.lab.Hosts[i].Dial(context.Background())
			if err != nil {
				errs[i] = err
				return
			}
			defer c.Close()
			errs[i] = fn(h, c)
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// stageOpenSSH writes every host's files and an sftp batch file to the
// local disk once, for floorOpenSSH.
func (f *fixture) stageOpenSSH() (map[string]string, error) {
	batches := map[string]string{}
	for _, h := range f.hosts {
		dir := filepath.Join(f.dir, "openssh", h.Name)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
		var batch strings.Builder
		made := map[string]bool{}
		for i, mf := range f.installed[h.Name] {
			local := filepath.Join(dir, fmt.Sprintf("f%d", i))
			if err := os.WriteFile(local, mf.Content, 0o600); err != nil {
				return nil, err
			}
			if d := path.Dir(mf.Path); !made[d] {
				// "-": a directory that exists is no error.
				fmt.Fprintf(&batch, "-mkdir %q\n", d)
				made[d] = true
			}
			fmt.Fprintf(&batch, "put %q %q\nchmod %o %q\n", local, mf.Path, mf.Mode, mf.Path)
		}
		batches[h.Name] = filepath.Join(dir, "batch")
		if err := os.WriteFile(batches[h.Name], []byte(batch.String()), 0o600); err != nil {
			return nil, err
		}
	}
	return batches, nil
}

// floorOpenSSH is the same transfer with OpenSSH's sftp client, one
// process per host, all at once. It returns the CPU time the sftp
// processes (and their ssh) used.
func (f *fixture) floorOpenSSH(batches map[string]string) (time.Duration, error) {
	errs := make([]error, len(f.hosts))
	var mu sync.Mutex
	var cpu time.Duration
	var wg sync.WaitGroup
	for i, h := range f.hosts {
		wg.Go(func() {
			cmd := exec.Command("sftp", "-q", "-b", batches[h.Name], "-i", f.lab.ClientKeyFile,
				"-o", "UserKnownHostsFile="+f.lab.KnownHostsFile, "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
				"-o", "IdentitiesOnly=yes", "-F", "none", f.lab.User+"@"+h.SSH.Address)
			if out, err := cmd.CombinedOutput(); err != nil {
				errs[i] = fmt.Errorf("%s: sftp: %v\n%s", h.Name, err, out)
			}
			mu.Lock()
			cpu += processCPU(cmd.ProcessState)
			mu.Unlock()
		})
	}
	wg.Wait()
	return cpu, errors.Join(errs...)
}

// floorCheck is what a no-op re-apply would do if it hashed the managed
// files: per host, all at once, one SSH connection and one command that
// hashes them. Nothing is compared, nothing asked of launchd or the
// apiserver. (fleetctl hashes only files whose stat differs from what it
// recorded at install.)
func (f *fixture) floorCheck() error {
	return f.eachHost(func(h inventory.Host, c *ssh.Client) error {
		cmd := "sha256sum"
		for _, mf := range f.installed[h.Name] {
			cmd += " " + shellQuote(mf.Path)
		}
		return runOn(h, c, cmd)
	})
}

// floorConnect is the least any tool that works over SSH does per host:
// one connection and one command, `true`, on every host at once.
func (f *fixture) floorConnect() error {
	return f.eachHost(func(h inventory.Host, c *ssh.Client) error { return runOn(h, c, "true") })
}

func runOn(h inventory.Host, c *ssh.Client, cmd string) error {
	sess, err := c.NewSession()
	if err != nil {
		return err
	}
	defer sess.Close()
	if out, err := sess.CombinedOutput(cmd); err != nil {
		return fmt.Errorf("%s: %s: %w\n%s", h.Name, cmd, err, out)
	}
	return nil
}
