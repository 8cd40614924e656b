package inventory

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
)

// resolveLocalPaths makes every path on the operator's machine absolute:
// ~ and ~/x expand to the home directory, and relative paths are taken
// from the inventory file's directory, so an inventory means the same
// thing whatever directory fleetctl runs in. Paths on the Macs are left
// alone; validate requires them to be absolute already.
func (inv *Inventory) resolveLocalPaths(l *errorList, o options) {
	home := func() (string, error) {
		if o.home != "" {
			return o.home, nil
		}
		return os.UserHomeDir()
	}
	resolve := func(h *Host, rel string, p *string) {
		out, err := expandLocal(*p, o.baseDir, home)
		if err != nil {
			l.host(h, rel, "%v", err)
			return
		}
		*p = out
	}
	hosts := make([]*Host, 0, len(inv.Hosts)+1)
	if inv.defaults != nil {
		hosts = append(hosts, inv.defaults)
	}
	for i := range inv.Hosts {
		hosts = append(hosts, &inv.Hosts[i])
	}
	for _, h := range hosts {
		resolve(h, "ssh.identityFile", &h.SSH.IdentityFile)
		resolve(h, "ssh.knownHostsFile", &h.SSH.KnownHostsFile)
		resolve(h, "cluster.operatorKubeconfig", &h.Cluster.OperatorKubeconfig)
		if r := h.Cluster.NodeCredentials.Kubeconfig; r != nil {
			resolve(h, "cluster.nodeCredentials.kubeconfig.file", &r.File)
		}
		if r := h.GuestSSH.PrivateKey; r != nil {
			resolve(h, "guestSSH.privateKey.file", &r.File)
		}
		if r := h.GuestSSH.Password; r != nil {
			resolve(h, "guestSSH.password.file", &r.File)
		}
	}
}

// expandLocal expands ~ and resolves p against base. Empty stays empty.
func expandLocal(p, base string, home func() (string, error)) (string, error) {
	switch {
	case p == "" || looksInline(p):
		// validate reports inline secrets without echoing them.
		return p, nil
	case p == "~" || strings.HasPrefix(p, "~/"):
		dir, err := home()
		if err != nil || dir == "" {
			return "", errors.New("cannot expand ~: the home directory is unknown here; write an absolute path")
		}
		return filepath.Join(dir, p[1:]), nil
	case strings.HasPrefix(p, "~"):
		return "", errors.New("~user paths are not supported; write the path out in full or use ~/")
	case filepath.IsAbs(p):
		return filepath.Clean(p), nil
	default:
		return filepath.Join(base, p), nil
	}
}

// looksInline reports whether a value meant to be a path or a variable name
// is more likely the secret itself (a PEM block, a kubeconfig, a pasted
// multi-line value).
func looksInline(s string) bool {
	return strings.Contains(s, "\n") || strings.Contains(s, "-----BEGIN") || strings.HasPrefix(s, "apiVersion:")
}
