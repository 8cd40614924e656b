package inventory

import (
	"os"
)

// CheckReferences checks that what the inventory points at on this machine
// is there: SSH identity files, operator kubeconfigs and secret files are
// readable regular files, and secret environment variables are set.
// lookupEnv is os.LookupEnv when nil. Nothing is read beyond opening the
// files, and no value is ever put in an error.
func (inv *Inventory) CheckReferences(lookupEnv func(string) (string, bool)) error {
	if lookupEnv == nil {
		lookupEnv = os.LookupEnv
	}
	l := newErrorList(inv.File, inv.pos)
	for i := range inv.Hosts {
		h := &inv.Hosts[i]
		file := func(rel, path, what string) {
			if path == "" {
				return
			}
			if msg := checkReadable(path); msg != "" {
				l.host(h, rel, "%s %s %s", what, path, msg)
			}
		}
		ref := func(rel string, r *SecretRef) {
			switch {
			case r == nil:
			case r.Env != "":
				if v, ok := lookupEnv(r.Env); !ok || v == "" {
					l.host(h, rel+".env", "environment variable %s is not set; export it before running fleetctl", r.Env)
				}
			default:
				file(rel+".file", r.File, "secret file")
			}
		}
		file("ssh.identityFile", h.SSH.IdentityFile, "identity file")
		file("cluster.operatorKubeconfig", h.Cluster.OperatorKubeconfig, "operator kubeconfig")
		ref("cluster.nodeCredentials.kubeconfig", h.Cluster.NodeCredentials.Kubeconfig)
		ref("guestSSH.privateKey", h.GuestSSH.PrivateKey)
		ref("guestSSH.password", h.GuestSSH.Password)
	}
	return l.err()
}

func checkReadable(path string) string {
	f, err := os.Open(path)
	if err != nil {
		if os.IsNotExist(err) {
			return "does not exist"
		}
		return "cannot be read: " + err.Error()
	}
	defer f.Close()
	st, err := f.Stat()
	switch {
	case err != nil:
		return "cannot be read: " + err.Error()
	case !st.Mode().IsRegular():
		return "is not a regular file"
	}
	return ""
}
