package fleet

import (
	"fmt"
	"net"
	"path"

	"github.com/vzfleet/vzfleet/inventory"
	"github.com/vzfleet/vzfleet/templates"
)

// Names of the files fleetctl installs in Paths.ConfigDir besides those
// inventory.Paths names.
const (
	configFileName = "vz-node.yaml"
	caFileName     = "ca.crt"
)

// EnvSSHPasswordFile names the file holding the guest SSH password; the
// password itself never goes into the (world-readable) plist.
const EnvSSHPasswordFile = "VZ_SSH_PASSWORD_FILE"

// secrets are a host's credentials, resolved before the files are built.
type secrets struct {
	caPEM         []byte
	kubeconfig    []byte
	serving       KeyPair
	guestKey      []byte
	guestPassword []byte
}

// nodeIP is the address the API server reaches the node at: the SSH
// address when it is an IP.
func nodeIP(h inventory.Host) net.IP { return net.ParseIP(h.SSH.Address) }

// desiredFiles builds the host's managed files, in install order: what the
// binary's signature needs first, the plist (which launchd reads) last.
// The binary's content is read only for an upload: its sha256 and size
// stand for it here.
func desiredFiles(h inventory.Host, binarySum string, binarySize int64, s secrets) ([]File, error) {
	p := h.Paths
	cfgPath := path.Join(p.ConfigDir, configFileName)
	caPath := path.Join(p.ConfigDir, caFileName)

	ent, err := templates.RenderEntitlements(templates.Entitlements{Bridged: h.Node.BridgeInterface != ""})
	if err != nil {
		return nil, err
	}
	nc := templates.NodeConfig{
		NodeName:        h.Node.Name,
		LogLevel:        string(h.Node.LogLevel),
		Driver:          string(h.Node.Driver),
		MaxVMs:          h.Node.MaxVMs,
		ReserveCPU:      h.Node.Reserve.CPU.String(),
		ReserveMemory:   h.Node.Reserve.Memory.String(),
		BridgeInterface: h.Node.BridgeInterface,
		DockerHost:      h.Node.DockerHost,
		SandboxImage:    h.Node.SandboxImage,
		CacheDir:        p.CacheDir,
		StateDir:        p.StateDir,
		Kubeconfig:      p.Kubeconfig(),
		CertPath:        p.ServingCert(),
		KeyPath:         p.ServingKey(),
		ClientCAPath:    caPath,
		SSHUser:         h.GuestSSH.User,
	}
	if ip := nodeIP(h); ip != nil {
		nc.InternalIP = ip.String()
	}
	if s.guestKey != nil {
		nc.SSHKeyFile = p.GuestSSHKey()
	}
	cfg, err := templates.RenderNodeConfig(nc)
	if err != nil {
		return nil, fmt.Errorf("host %s: %w", h.Name, err)
	}
	env := map[string]string{
		"KUBECONFIG":                 p.Kubeconfig(),
		"APISERVER_CERT_LOCATION":    p.ServingCert(),
		"APISERVER_KEY_LOCATION":     p.ServingKey(),
		"APISERVER_CA_CERT_LOCATION": caPath,
		"VZ_SSH_USER":                h.GuestSSH.User,
	}
	if s.guestKey != nil {
		env["VZ_SSH_KEY_FILE"] = p.GuestSSHKey()
	}
	if s.guestPassword != nil {
		env[EnvSSHPasswordFile] = p.GuestSSHPassword()
	}
	plist, err := templates.RenderLaunchd(templates.Launchd{
		Label:             p.LaunchdLabel,
		ProgramArguments:  []string{p.Binary, "--config", cfgPath},
		Environment:       env,
		WorkingDirectory:  p.StateDir,
		RunAtLoad:         true,
		KeepAlive:         true,
		ThrottleInterval:  10,
		StandardOutPath:   p.Log,
		StandardErrorPath: p.Log,
	})
	if err != nil {
		return nil, fmt.Errorf("host %s: %w", h.Name, err)
	}

	root := func(f File) File {
		if f.sum == "" {
			f.sum = sha256Hex(f.Content)
		}
		f.Owner, f.Group = "0", "0"
		if f.Secret {
			f.Mode = 0o600
		}
		return f
	}
	files := []File{
		root(File{Kind: KindEntitlements, Path: p.Entitlements(), Content: ent, Mode: 0o644}),
		root(File{Kind: KindConfig, Path: cfgPath, Content: cfg, Mode: 0o644, Restart: true}),
		root(File{Kind: KindCA, Path: caPath, Content: s.caPEM, Mode: 0o644, Restart: true}),
		root(File{Kind: KindKubeconfig, Path: p.Kubeconfig(), Content: s.kubeconfig, Secret: true, Restart: true}),
		root(File{Kind: KindServingCert, Path: p.ServingCert(), Content: s.serving.Cert, Mode: 0o644, Restart: true}),
		root(File{Kind: KindServingKey, Path: p.ServingKey(), Content: s.serving.Key, Secret: true, Restart: true}),
	}
	if s.guestKey != nil {
		files = append(files, root(File{Kind: KindGuestSSHKey, Path: p.GuestSSHKey(), Content: s.guestKey, Secret: true, Restart: true}))
	}
	if s.guestPassword != nil {
		files = append(files, root(File{Kind: KindGuestSSHPassword, Path: p.GuestSSHPassword(), Content: s.guestPassword, Secret: true, Restart: true}))
	}
	files = append(files,
		root(File{Kind: KindBinary, Path: p.Binary, Mode: 0o755, Sign: true, DependsOn: []string{p.Entitlements()}, Restart: true, sum: binarySum, size: binarySize}),
		root(File{Kind: KindPlist, Path: p.Plist, Content: plist, Mode: 0o644}),
	)
	return files, nil
}

// dirsFor lists the directories that must exist before the upload.
func dirsFor(h inventory.Host) []string {
	p := h.Paths
	return []string{p.ConfigDir, p.StateDir, p.CacheDir, path.Dir(p.Binary), path.Dir(p.Plist), path.Dir(p.Log)}
}
