package node

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
	"k8s.io/apimachinery/pkg/api/resource"
)

// Config is everything vz-node needs to run. cmd/vz-node fills it from
// defaults, an optional YAML file, the environment and flags, in that order
// of increasing precedence.
type Config struct {
	// NodeName is the node's name in Kubernetes (default: the hostname).
	NodeName string `yaml:"nodeName"`
	// StartupTimeout bounds the time until the node is registered and the
	// pod controller runs; 0 waits forever.
	StartupTimeout Duration `yaml:"startupTimeout"`
	// DisableTaint drops the virtual-kubelet.io/provider=vz:NoSchedule taint.
	DisableTaint bool   `yaml:"disableTaint"`
	LogLevel     string `yaml:"logLevel"`
	// PodSyncWorkers is the number of pod reconcile workers.
	PodSyncWorkers int `yaml:"podSyncWorkers"`
	// FullResyncPeriod is the informers' full resync period.
	FullResyncPeriod Duration `yaml:"fullResyncPeriod"`

	// Kubelet API (the HTTPS server the apiserver calls for exec/logs/stats).
	ListenAddress string `yaml:"listenAddress"`
	// CertPath/KeyPath: the serving certificate (APISERVER_CERT_LOCATION /
	// APISERVER_KEY_LOCATION); reloaded when the files change.
	CertPath string `yaml:"certPath"`
	KeyPath  string `yaml:"keyPath"`
	// ClientCAPath verifies client certificates (--client-verify-ca,
	// default APISERVER_CA_CERT_LOCATION).
	ClientCAPath string `yaml:"clientVerifyCA"`
	// NoVerifyClients turns authentication and authorization off.
	NoVerifyClients bool `yaml:"noVerifyClients"`
	// AuthWebhook authenticates bearer tokens with TokenReview and authorizes
	// with SubjectAccessReview.
	AuthWebhook                 bool     `yaml:"authenticationTokenWebhook"`
	AuthWebhookCacheTTL         Duration `yaml:"authenticationTokenWebhookCacheTTL"`
	AuthzWebhookAuthorizedTTL   Duration `yaml:"authorizationWebhookCacheAuthorizedTTL"`
	AuthzWebhookUnauthorizedTTL Duration `yaml:"authorizationWebhookCacheUnauthorizedTTL"`
	StreamIdleTimeout           Duration `yaml:"streamIdleTimeout"`
	StreamCreationTimeout       Duration `yaml:"streamCreationTimeout"`
	Kubeconfig                  string   `yaml:"kubeconfig"`
	// KubeAPIQPS and KubeAPIBurst limit requests to the apiserver, as the
	// kubelet's flags of the same names do (and with its defaults): pod
	// statuses and events share them.
	KubeAPIQPS                   float32  `yaml:"kubeAPIQPS"`
	KubeAPIBurst                 int      `yaml:"kubeAPIBurst"`
	TraceSampleRate              string   `yaml:"traceSampleRate"`
	OTLPEndpoint                 string   `yaml:"otlpEndpoint"`
	OTLPInsecure                 bool     `yaml:"otlpInsecure"`
	ServiceName                  string   `yaml:"serviceName"`
	NodeStatusUpdateInterval     Duration `yaml:"nodeStatusUpdateInterval"`
	ConditionCheckInterval       Duration `yaml:"conditionCheckInterval"`
	DiskPressureFreeBytesMinimum Quantity `yaml:"diskPressureFreeBytesMinimum"`

	// InternalIP overrides the autodetected node address (VKUBELET_POD_IP).
	InternalIP string `yaml:"internalIP"`

	// VMs.
	Driver          string `yaml:"driver"`
	MaxVMs          int    `yaml:"maxVMs"`
	CacheDir        string `yaml:"cacheDir"`
	StateDir        string `yaml:"stateDir"`
	BridgeInterface string `yaml:"bridgeInterface"`
	LeasesPath      string `yaml:"leasesPath"`
	// InsecureRegistries are reached over plain HTTP (loopback always is).
	InsecureRegistries []string `yaml:"insecureRegistries"`
	SimBootDelay       Duration `yaml:"simBootDelay"`
	// GuestSSHPort is the guests' SSH port; 0 means 22 (tests run
	// simulated guests on another port).
	GuestSSHPort int `yaml:"guestSSHPort"`
	// ReserveCPU / ReserveMemory are kept for the host and not offered as
	// node allocatable.
	ReserveCPU    Quantity `yaml:"reserveCPU"`
	ReserveMemory Quantity `yaml:"reserveMemory"`

	// Guest SSH credentials (VZ_SSH_USER, VZ_SSH_PASSWORD or
	// VZ_SSH_PASSWORD_FILE, VZ_SSH_KEY_FILE). A password file keeps the
	// password out of the process environment and the launchd plist; it
	// must be 0600 (fleetctl apply writes it so).
	SSHUser         string `yaml:"sshUser"`
	SSHPassword     string `yaml:"-"`
	SSHPasswordFile string `yaml:"sshPasswordFile"`
	SSHKeyFile      string `yaml:"sshKeyFile"`
	// DockerHost is the Docker daemon for sidecars (DOCKER_HOST); empty means
	// sidecars are not configured.
	DockerHost string `yaml:"dockerHost"`
	// SandboxImage is the pause image of each pod's sandbox container,
	// whose network namespace the pod's Docker containers share.
	SandboxImage string `yaml:"sandboxImage"`
}

// Duration is a time.Duration that reads either Go syntax ("90s") or a bare
// number of seconds ("90"), as macOS-vz-kubelet's integer flags do.
type Duration time.Duration

// ParseDuration parses s as a Duration.
func ParseDuration(s string) (Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, nil
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n < 0 {
			return 0, fmt.Errorf("duration %q is negative", s)
		}
		return Duration(time.Duration(n) * time.Second), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("duration %q: want seconds (e.g. 30) or a Go duration (e.g. 30s, 2m): %w", s, err)
	}
	if d < 0 {
		return 0, fmt.Errorf("duration %q is negative", s)
	}
	return Duration(d), nil
}

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) String() string { return time.Duration(d).String() }

// Set implements pflag.Value.
func (d *Duration) Set(s string) error {
	v, err := ParseDuration(s)
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// Type implements pflag.Value.
func (d *Duration) Type() string { return "duration" }

// UnmarshalYAML accepts the same forms as ParseDuration.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	return d.Set(n.Value)
}

// MarshalYAML writes Go duration syntax.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// Quantity is a Kubernetes resource quantity ("2", "500m", "4Gi").
type Quantity struct{ resource.Quantity }

func (q Quantity) String() string { return q.Quantity.String() }

// Set implements pflag.Value.
func (q *Quantity) Set(s string) error {
	v, err := resource.ParseQuantity(s)
	if err != nil {
		return fmt.Errorf("quantity %q: %w", s, err)
	}
	q.Quantity = v
	return nil
}

// Type implements pflag.Value.
func (q *Quantity) Type() string { return "quantity" }

// UnmarshalYAML reads a quantity from a string or number.
func (q *Quantity) UnmarshalYAML(n *yaml.Node) error { return q.Set(n.Value) }

// MarshalYAML writes the canonical string.
func (q Quantity) MarshalYAML() (any, error) { return q.String(), nil }

// MustQuantity parses s or panics; for defaults and tests.
func MustQuantity(s string) Quantity { return Quantity{resource.MustParse(s)} }

// DefaultConfig returns the built-in defaults. Paths below the user's home
// directory follow the platform's conventions (defaults_<os>.go).
func DefaultConfig() Config {
	host, _ := os.Hostname()
	return Config{
		NodeName:                     strings.ToLower(host),
		LogLevel:                     "info",
		Kubeconfig:                   defaultKubeconfig(),
		KubeAPIQPS:                   50,
		KubeAPIBurst:                 100,
		PodSyncWorkers:               10,
		FullResyncPeriod:             Duration(time.Minute),
		ListenAddress:                ":10250",
		AuthWebhookCacheTTL:          Duration(2 * time.Minute),
		AuthzWebhookAuthorizedTTL:    Duration(5 * time.Minute),
		AuthzWebhookUnauthorizedTTL:  Duration(30 * time.Second),
		StreamIdleTimeout:            Duration(4 * time.Hour),
		StreamCreationTimeout:        Duration(30 * time.Second),
		TraceSampleRate:              "",
		ServiceName:                  "vz-node",
		NodeStatusUpdateInterval:     Duration(time.Minute),
		ConditionCheckInterval:       Duration(10 * time.Second),
		DiskPressureFreeBytesMinimum: MustQuantity("10Gi"),
		Driver:                       defaultDriver,
		MaxVMs:                       2,
		SandboxImage:                 DefaultSandboxImage,
		CacheDir:                     defaultCacheDir(),
		StateDir:                     defaultStateDir(),
		LeasesPath:                   defaultLeasesPath,
		SimBootDelay:                 Duration(2 * time.Second),
		ReserveCPU:                   MustQuantity("1"),
		ReserveMemory:                MustQuantity("2Gi"),
	}
}

// LoadConfigFile reads a YAML config file over base. Unknown keys are errors
// (with their line), so a typo never silently falls back to a default.
func LoadConfigFile(path string, base Config) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return base, fmt.Errorf("config file: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	cfg := base
	if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
		return base, fmt.Errorf("config file %s: %w", path, err)
	}
	return cfg, nil
}

// DefaultSandboxImage is the kubelet's pause image of Kubernetes 1.35.
const DefaultSandboxImage = "registry.k8s.io/pause:3.10.1"

// Environment variable names, as macOS-vz-kubelet reads them.
const (
	EnvKubeconfig    = "KUBECONFIG"
	EnvCert          = "APISERVER_CERT_LOCATION"
	EnvKey           = "APISERVER_KEY_LOCATION"
	EnvCACert        = "APISERVER_CA_CERT_LOCATION"
	EnvPodIP         = "VKUBELET_POD_IP"
	EnvBridge        = "VZ_BRIDGE_INTERFACE"
	EnvSSHUser       = "VZ_SSH_USER"
	EnvSSHPassword   = "VZ_SSH_PASSWORD"
	EnvSSHPassFile   = "VZ_SSH_PASSWORD_FILE"
	EnvSSHKeyFile    = "VZ_SSH_KEY_FILE"
	EnvDockerHost    = "DOCKER_HOST"
	EnvOTLPEndpoint  = "OTEL_EXPORTER_OTLP_ENDPOINT"
	EnvOTLPInsecure  = "OTEL_EXPORTER_OTLP_INSECURE"
	EnvOTELService   = "OTEL_SERVICE_NAME"
	defaultKubeconf  = ".kube/config"
	defaultLeasesDir = "/var/db"
)

// ApplyEnv overlays the environment variables that are set (getenv returns
// "" for unset ones).
func ApplyEnv(cfg *Config, getenv func(string) string) error {
	set := func(dst *string, key string) {
		if v := getenv(key); v != "" {
			*dst = v
		}
	}
	set(&cfg.Kubeconfig, EnvKubeconfig)
	set(&cfg.CertPath, EnvCert)
	set(&cfg.KeyPath, EnvKey)
	if v := getenv(EnvCACert); v != "" && cfg.ClientCAPath == "" {
		cfg.ClientCAPath = v
	}
	set(&cfg.InternalIP, EnvPodIP)
	set(&cfg.BridgeInterface, EnvBridge)
	set(&cfg.SSHUser, EnvSSHUser)
	set(&cfg.SSHPassword, EnvSSHPassword)
	set(&cfg.SSHPasswordFile, EnvSSHPassFile)
	set(&cfg.SSHKeyFile, EnvSSHKeyFile)
	set(&cfg.DockerHost, EnvDockerHost)
	set(&cfg.OTLPEndpoint, EnvOTLPEndpoint)
	set(&cfg.ServiceName, EnvOTELService)
	if v := getenv(EnvOTLPInsecure); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("%s=%q: want true or false", EnvOTLPInsecure, v)
		}
		cfg.OTLPInsecure = b
	}
	return nil
}

// Validate reports every problem with cfg at once.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.NodeName == "" {
		bad("--nodename is empty and the hostname is unknown: set --nodename")
	}
	if c.KubeAPIQPS <= 0 || c.KubeAPIBurst < 1 {
		bad("--kube-api-qps %g / --kube-api-burst %d: want both above 0", c.KubeAPIQPS, c.KubeAPIBurst)
	}
	if c.PodSyncWorkers < 1 {
		bad("--pod-sync-workers %d: want at least 1", c.PodSyncWorkers)
	}
	if c.MaxVMs < 1 {
		bad("--max-vms %d: want at least 1", c.MaxVMs)
	}
	if c.DockerHost != "" && strings.TrimSpace(c.SandboxImage) == "" {
		bad("--sandbox-image is empty: pods' Docker containers need a pause image to share a network namespace (the default is %s)", DefaultSandboxImage)
	}
	switch strings.ToLower(c.LogLevel) {
	case "debug", "info", "warn", "warning", "error":
	default:
		bad("--log-level %q: want debug, info, warn or error", c.LogLevel)
	}
	if _, _, err := net.SplitHostPort(c.ListenAddress); err != nil {
		bad("--listen-address %q: %v", c.ListenAddress, err)
	}
	if c.InternalIP != "" && net.ParseIP(c.InternalIP) == nil {
		bad("%s / internalIP %q is not an IP address", EnvPodIP, c.InternalIP)
	}
	if (c.CertPath == "") != (c.KeyPath == "") {
		bad("%s and %s must be set together", EnvCert, EnvKey)
	}
	if !c.NoVerifyClients && c.CertPath != "" && c.ClientCAPath == "" && !c.AuthWebhook {
		bad("the kubelet API needs client verification: set --client-verify-ca (or %s), --authentication-token-webhook, or --no-verify-clients", EnvCACert)
	}
	if c.CacheDir == "" || c.StateDir == "" {
		bad("--cache-dir and --state-dir must be set")
	}
	if (c.SSHPassword != "" || c.SSHPasswordFile != "" || c.SSHKeyFile != "") && c.SSHUser == "" {
		bad("%s must be set with %s, %s or %s", EnvSSHUser, EnvSSHPassword, EnvSSHPassFile, EnvSSHKeyFile)
	}
	if c.SSHPassword != "" && c.SSHPasswordFile != "" {
		bad("%s and %s are both set: keep one (the file keeps the password out of the environment)", EnvSSHPassword, EnvSSHPassFile)
	}
	if c.TraceSampleRate != "" {
		if _, err := parseSampleRate(c.TraceSampleRate); err != nil {
			errs = append(errs, err)
		}
	}
	if c.ReserveCPU.Sign() < 0 || c.ReserveMemory.Sign() < 0 {
		bad("reserves must not be negative")
	}
	return errors.Join(errs...)
}

// parseSampleRate reads --trace-sample-rate: "always", "never", or a
// fraction 0..1 (or a percentage 0..100 as macOS-vz-kubelet allows).
func parseSampleRate(s string) (float64, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "always":
		return 1, nil
	case "never":
		return 0, nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 0 || f > 100 {
		return 0, fmt.Errorf("--trace-sample-rate %q: want always, never, a fraction 0..1 or a percentage up to 100", s)
	}
	if f > 1 {
		f /= 100
	}
	return f, nil
}

func homeDir() string {
	if h, err := os.UserHomeDir(); err == nil {
		return h
	}
	return "/var/root"
}

func defaultKubeconfig() string { return filepath.Join(homeDir(), defaultKubeconf) }
