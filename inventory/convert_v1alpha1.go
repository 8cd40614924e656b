package inventory

import (
	"fmt"
	"maps"
	"slices"

	"github.com/vzfleet/vzfleet/inventory/v1alpha1"
)

// convert turns the decoded file into the internal types: defaults merged
// into every host, then v1alpha1's defaults applied, then a field-by-field
// copy. It cannot fail; validate judges the result.
func convert(ext *v1alpha1.Inventory, file string, pos map[string]position) *Inventory {
	inv := &Inventory{File: file, pos: pos, Hosts: make([]Host, 0, len(ext.Hosts))}
	if ext.Defaults != nil {
		spec, origins := mergeSpec(nil, "", ext.Defaults, "defaults")
		v1alpha1.SetDefaultsHost("", &spec)
		h := convertHost("", &spec)
		h.src = &source{prefix: "defaults", origins: origins}
		inv.defaults = &h
	}
	for i := range ext.Hosts {
		eh := &ext.Hosts[i]
		prefix := fmt.Sprintf("hosts[%d]", i)
		spec, origins := mergeSpec(&eh.HostSpec, prefix, ext.Defaults, "defaults")
		if spec.Node == nil || spec.Node.Name == nil {
			// The node is named after the host: a bad node name is fixed
			// by renaming the host, so point there.
			origins["node.name"] = prefix + ".name"
		}
		v1alpha1.SetDefaultsHost(eh.Name, &spec)
		h := convertHost(eh.Name, &spec)
		h.src = &source{prefix: prefix, origins: origins}
		inv.Hosts = append(inv.Hosts, h)
	}
	r := ext.Rollout
	if r == nil {
		r = &v1alpha1.Rollout{}
	}
	v1alpha1.SetDefaultsRollout(r)
	inv.Rollout = Rollout{
		Concurrency:    *r.Concurrency,
		MaxUnavailable: IntOrPercent{Value: r.MaxUnavailable.Value, Percent: r.MaxUnavailable.Percent},
		ReadyTimeout:   r.ReadyTimeout.Duration,
	}
	return inv
}

// convertHost copies defaulted settings; only fields SetDefaultsHost may
// leave unset (those without a default) are nil-checked.
func convertHost(name string, s *v1alpha1.HostSpec) Host {
	h := Host{
		Name: name,
		SSH: SSH{
			Address:        deref(s.SSH.Address),
			Port:           *s.SSH.Port,
			User:           deref(s.SSH.User),
			IdentityFile:   deref(s.SSH.IdentityFile),
			Agent:          *s.SSH.Agent,
			KnownHostsFile: *s.SSH.KnownHostsFile,
			Sudo:           *s.SSH.Sudo,
			ConnectTimeout: s.SSH.ConnectTimeout.Duration,
		},
		Node: Node{
			Name:   deref(s.Node.Name),
			Labels: maps.Clone(s.Node.Labels),
			MaxVMs: *s.Node.MaxVMs,
			Reserve: Reserve{
				CPU:    s.Node.Reserve.CPU.Quantity,
				Memory: s.Node.Reserve.Memory.Quantity,
			},
			BridgeInterface: deref(s.Node.BridgeInterface),
			DockerHost:      deref(s.Node.DockerHost),
			SandboxImage:    deref(s.Node.SandboxImage),
			Driver:          Driver(*s.Node.Driver),
			LogLevel:        LogLevel(*s.Node.LogLevel),
		},
		Cluster: Cluster{
			OperatorKubeconfig: deref(s.Cluster.OperatorKubeconfig),
			APIServer:          deref(s.Cluster.APIServer),
			NodeCredentials: NodeCredentials{
				Kubeconfig: convertSecretRef(s.Cluster.NodeCredentials.Kubeconfig),
				CSR:        deref(s.Cluster.NodeCredentials.CSR),
			},
		},
		GuestSSH: GuestSSH{
			User:       *s.GuestSSH.User,
			PrivateKey: convertSecretRef(s.GuestSSH.PrivateKey),
			Password:   convertSecretRef(s.GuestSSH.Password),
		},
		Images: slices.Clone(s.Images),
		Paths: Paths{
			Binary:       *s.Paths.Binary,
			LaunchdLabel: *s.Paths.LaunchdLabel,
			Plist:        *s.Paths.Plist,
			ConfigDir:    *s.Paths.ConfigDir,
			StateDir:     *s.Paths.StateDir,
			CacheDir:     *s.Paths.CacheDir,
			Log:          *s.Paths.Log,
		},
	}
	// address: "" on a host switches off a jump host set in the defaults.
	if j := s.SSH.JumpHost; j != nil && (j.Address == nil || *j.Address != "") {
		h.SSH.JumpHost = &JumpHost{Address: deref(j.Address), Port: *j.Port, User: deref(j.User)}
	}
	for _, t := range s.Node.Taints {
		h.Node.Taints = append(h.Node.Taints, Taint{Key: t.Key, Value: t.Value, Effect: TaintEffect(t.Effect)})
	}
	return h
}

func convertSecretRef(r *v1alpha1.SecretRef) *SecretRef {
	if r == nil {
		return nil
	}
	return &SecretRef{File: deref(r.File), Env: deref(r.Env)}
}

func deref[T any](p *T) T {
	if p == nil {
		var zero T
		return zero
	}
	return *p
}
