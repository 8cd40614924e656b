package node

import (
	"context"
	"io"
	"net"
	"time"

	"github.com/virtual-kubelet/virtual-kubelet/node/api"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/vzfleet/vzfleet/node/podenv"
	"github.com/vzfleet/vzfleet/node/volume"
)

// The provider's collaborators, as small interfaces so the pod logic is
// testable without VMs, SSH or a registry.

// Guest reaches a running VM over SSH with the credentials vz-node was
// given. Target names the VM: its address and the file that pins its host
// key on first contact.
type Guest interface {
	// WaitSSH blocks until the guest accepts an SSH session.
	WaitSSH(ctx context.Context, t GuestTarget) error
	// Exec runs req in the guest and returns the command's exit code.
	Exec(ctx context.Context, t GuestTarget, req ExecRequest) (int, error)
	// Shutdown asks the guest OS to power off (`shutdown -h now`).
	Shutdown(ctx context.Context, t GuestTarget) error
}

// Objects is what vz-node reads from the API for a pod: the Secrets and
// ConfigMaps it references, its service account tokens, its
// PersistentVolumeClaims and their PersistentVolumes, and the Services
// whose variables its containers get.
type Objects interface {
	volume.Source
	volume.Claims
	podenv.ServiceLister
}

// kubeObjects reads the Secrets, ConfigMaps and PersistentVolumeClaims a
// pod references, and their PersistentVolumes, one GET each: the Node authorizer lets a node get what its pods reference but
// never list or watch them, so informers' listers stay empty under node
// credentials. Services, which nodes may list, are listed per namespace.
type kubeObjects struct{ c kubernetes.Interface }

func (k kubeObjects) Services(ctx context.Context, ns string) ([]corev1.Service, error) {
	l, err := k.c.CoreV1().Services(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	return l.Items, nil
}

func (k kubeObjects) Secret(ctx context.Context, ns, name string) (*corev1.Secret, error) {
	return k.c.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
}

func (k kubeObjects) ConfigMap(ctx context.Context, ns, name string) (*corev1.ConfigMap, error) {
	return k.c.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
}

func (k kubeObjects) PersistentVolumeClaim(ctx context.Context, ns, name string) (*corev1.PersistentVolumeClaim, error) {
	return k.c.CoreV1().PersistentVolumeClaims(ns).Get(ctx, name, metav1.GetOptions{})
}

func (k kubeObjects) PersistentVolume(ctx context.Context, name string) (*corev1.PersistentVolume, error) {
	return k.c.CoreV1().PersistentVolumes().Get(ctx, name, metav1.GetOptions{})
}

// Token asks the TokenRequest API for a token bound to the pod, which the
// Node authorizer allows for pods on this node.
func (k kubeObjects) Token(ctx context.Context, pod *corev1.Pod, serviceAccount, audience string, seconds int64) (string, time.Time, error) {
	req := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
		ExpirationSeconds: &seconds,
		BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
	}}
	if audience != "" {
		req.Spec.Audiences = []string{audience}
	}
	tr, err := k.c.CoreV1().ServiceAccounts(pod.Namespace).CreateToken(ctx, serviceAccount, req, metav1.CreateOptions{})
	if err != nil {
		return "", time.Time{}, err
	}
	return tr.Status.Token, tr.Status.ExpirationTimestamp.Time, nil
}

// GuestTarget identifies one guest for Guest.
type GuestTarget struct {
	VMID           string
	Addr           string // host:port of the guest's SSH server
	KnownHostsPath string
}

// ExecRequest is one command in the guest. An empty Argv asks for the
// user's login shell.
type ExecRequest struct {
	Argv   []string
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	TTY    bool
	Resize <-chan api.TermSize
}

// Overlayer makes a VM's private copy-on-write disk and NVRAM from a cached
// image, with a fresh MAC address and machine identifier.
type Overlayer interface {
	Create(ctx context.Context, img LocalImage, dir string) (Overlay, error)
}

// Overlay is one VM's private files and identity.
type Overlay struct {
	DiskPath  string
	AuxPath   string
	MAC       net.HardwareAddr
	MachineID []byte
}

// AddressFinder finds a guest's IPv4 address by its MAC address (DHCP
// leases first, ARP as fallback); an error while it is unknown.
type AddressFinder interface {
	Lookup(ctx context.Context, mac net.HardwareAddr) (net.IP, error)
}
