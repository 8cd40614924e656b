package image

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"

	"oras.land/oras-go/v2/registry"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/credentials"
	"oras.land/oras-go/v2/registry/remote/errcode"
	"oras.land/oras-go/v2/registry/remote/retry"
)

// Auth says how to log in to registries. Sources are tried in order:
// Username/Password (for any registry), each DockerConfigJSON (the
// .dockerconfigjson of an imagePullSecret), each DockerConfigFile (a docker
// config.json; its credential helpers are used too). No source means
// anonymous access.
type Auth struct {
	Username string
	Password string
	// DockerConfigJSON holds docker config documents ({"auths": {...}}).
	DockerConfigJSON [][]byte
	// DockerConfigFiles are paths of docker config.json files.
	DockerConfigFiles []string
}

// Remote is how to reach registries.
type Remote struct {
	Auth Auth
	// Insecure lists registries (host or host:port) reached over plain
	// HTTP. Loopback registries always are; every other one uses HTTPS.
	Insecure []string
	// HTTPClient overrides the HTTP client (default: retrying client).
	HTTPClient *http.Client
	// UserAgent is sent with every request.
	UserAgent string
}

// ParseReference parses an image reference (host[:port]/repo[:tag|@digest]);
// a reference without tag or digest means :latest.
func ParseReference(ref string) (registry.Reference, error) {
	r, err := registry.ParseReference(ref)
	if err != nil {
		return registry.Reference{}, fmt.Errorf("image reference %q: %w (want host[:port]/repository[:tag|@digest])", ref, err)
	}
	if r.Reference == "" {
		r.Reference = "latest"
	}
	return r, nil
}

func (rm *Remote) plainHTTP(host string) bool {
	if slices.Contains(rm.Insecure, host) {
		return true
	}
	h := host
	if hh, _, err := net.SplitHostPort(host); err == nil {
		h = hh
	}
	if slices.Contains(rm.Insecure, h) {
		return true
	}
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(strings.Trim(h, "[]"))
	return ip != nil && ip.IsLoopback()
}

func (rm *Remote) repository(ref registry.Reference) (*remote.Repository, error) {
	repo, err := remote.NewRepository(ref.Registry + "/" + ref.Repository)
	if err != nil {
		return nil, fmt.Errorf("repository %s/%s: %w", ref.Registry, ref.Repository, err)
	}
	repo.PlainHTTP = rm.plainHTTP(ref.Registry)
	cred, err := rm.Auth.credential()
	if err != nil {
		return nil, err
	}
	hc := rm.HTTPClient
	if hc == nil {
		hc = retry.DefaultClient
	}
	client := &auth.Client{Client: hc, Cache: auth.NewCache(), Credential: cred}
	if rm.UserAgent != "" {
		client.SetUserAgent(rm.UserAgent)
	}
	repo.Client = client
	return repo, nil
}

func (a Auth) credential() (auth.CredentialFunc, error) {
	var stores []credentials.Store
	for i, doc := range a.DockerConfigJSON {
		s, err := credentials.NewMemoryStoreFromDockerConfig(doc)
		if err != nil {
			return nil, fmt.Errorf("registry credentials: docker config document %d: %w", i, err)
		}
		stores = append(stores, s)
	}
	for _, path := range a.DockerConfigFiles {
		s, err := credentials.NewStore(path, credentials.StoreOptions{})
		if err != nil {
			return nil, fmt.Errorf("registry credentials: docker config %s: %w", path, err)
		}
		stores = append(stores, s)
	}
	user, pass := a.Username, a.Password
	return func(ctx context.Context, hostport string) (auth.Credential, error) {
		if user != "" || pass != "" {
			return auth.Credential{Username: user, Password: pass}, nil
		}
		// Docker Hub's credentials live under several names.
		keys := []string{hostport}
		if hostport == "registry-1.docker.io" {
			keys = append(keys, credentials.ServerAddressFromHostname(hostport), "index.docker.io", "docker.io")
		}
		for _, s := range stores {
			for _, k := range keys {
				c, err := s.Get(ctx, k)
				if err != nil {
					return auth.EmptyCredential, fmt.Errorf("registry credentials for %s: %w", hostport, err)
				}
				if c != auth.EmptyCredential {
					return c, nil
				}
			}
		}
		return auth.EmptyCredential, nil
	}, nil
}

// ErrUnauthorized is wrapped by errors about missing or refused registry
// credentials.
var ErrUnauthorized = errors.New("registry refused access (give credentials: an imagePullSecret, a docker config, or username and password)")

// classify marks authentication failures with ErrUnauthorized so callers
// can report them as such.
func classify(err error) error {
	if err == nil || errors.Is(err, ErrUnauthorized) {
		return err
	}
	var e *errcode.ErrorResponse
	if errors.Is(err, auth.ErrBasicCredentialNotFound) || (errors.As(err, &e) && (e.StatusCode == http.StatusUnauthorized || e.StatusCode == http.StatusForbidden)) {
		return fmt.Errorf("%w: %w", ErrUnauthorized, err)
	}
	return err
}
