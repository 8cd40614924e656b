package main

import (
	"fmt"
	"os"

	"github.com/spf13/pflag"

	"github.com/vzfleet/vzfleet/node"
)

// bindFlags declares vz-node's flags on fs, writing into c. The names and
// meanings of macOS-vz-kubelet's flags are kept; durations accept seconds
// ("60") as well as Go syntax ("1m").
func bindFlags(fs *pflag.FlagSet, c *node.Config) {
	fs.StringVar(&c.NodeName, "nodename", c.NodeName, "the node's name in Kubernetes")
	fs.Var(&c.StartupTimeout, "startup-timeout", "how long to wait for the node to register and start (0: forever)")
	fs.BoolVar(&c.DisableTaint, "disable-taint", c.DisableTaint, "do not taint the node with virtual-kubelet.io/provider=vz:NoSchedule")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "log level: debug, info, warn or error")
	fs.Float32Var(&c.KubeAPIQPS, "kube-api-qps", c.KubeAPIQPS, "requests per second to the apiserver (pod statuses and events share them)")
	fs.IntVar(&c.KubeAPIBurst, "kube-api-burst", c.KubeAPIBurst, "burst of requests to the apiserver above --kube-api-qps")
	fs.IntVar(&c.PodSyncWorkers, "pod-sync-workers", c.PodSyncWorkers, "number of pod synchronization workers")
	fs.Var(&c.FullResyncPeriod, "full-resync-period", "period of the informers' full resync")
	fs.StringVar(&c.ClientCAPath, "client-verify-ca", c.ClientCAPath, "CA certificate that signs kubelet API client certificates (default $APISERVER_CA_CERT_LOCATION)")
	fs.BoolVar(&c.NoVerifyClients, "no-verify-clients", c.NoVerifyClients, "do not authenticate or authorize kubelet API clients")
	fs.BoolVar(&c.AuthWebhook, "authentication-token-webhook", c.AuthWebhook, "authenticate bearer tokens with TokenReview and authorize with SubjectAccessReview")
	fs.Var(&c.AuthWebhookCacheTTL, "authentication-token-webhook-cache-ttl", "how long to cache TokenReview answers")
	fs.Var(&c.AuthzWebhookAuthorizedTTL, "authorization-webhook-cache-authorized-ttl", "how long to cache allowed SubjectAccessReview answers")
	fs.Var(&c.AuthzWebhookUnauthorizedTTL, "authorization-webhook-cache-unauthorized-ttl", "how long to cache denied SubjectAccessReview answers")
	fs.StringVar(&c.TraceSampleRate, "trace-sample-rate", c.TraceSampleRate, "trace sampling: always, never, a fraction 0..1 or a percentage")
	fs.StringVar(&c.ListenAddress, "listen-address", c.ListenAddress, "address of the kubelet API (HTTPS)")
	fs.StringVar(&c.Driver, "driver", c.Driver, "VM driver: vz (Virtualization.framework) or sim (simulator)")
	fs.IntVar(&c.MaxVMs, "max-vms", c.MaxVMs, "VMs that may run at once (the node's pod capacity)")
	fs.StringVar(&c.SandboxImage, "sandbox-image", c.SandboxImage, "pause image of each pod's sandbox container, whose network namespace the pod's Docker containers share")
	fs.StringVar(&c.CacheDir, "cache-dir", c.CacheDir, "VM image cache directory")
	fs.StringVar(&c.StateDir, "state-dir", c.StateDir, "per-VM state directory (overlays, supervisor state)")
	fs.StringSliceVar(&c.InsecureRegistries, "insecure-registry", c.InsecureRegistries, "registry (host[:port]) reached over plain HTTP; repeatable")
	fs.StringVar(&c.LeasesPath, "leases-file", c.LeasesPath, "DHCP leases file that records guests' addresses")
	fs.IntVar(&c.GuestSSHPort, "guest-ssh-port", c.GuestSSHPort, "the guests' SSH port (0: 22)")
	fs.Var(&c.SimBootDelay, "sim-boot-delay", "how long a simulated guest takes to boot (sim driver)")
	fs.Var(&c.ReserveCPU, "reserve-cpu", "CPU kept for the host and not offered to pods")
	fs.Var(&c.ReserveMemory, "reserve-memory", "memory kept for the host and not offered to pods")
	fs.StringVar(&c.SSHKeyFile, "ssh-key-file", c.SSHKeyFile, "private key for the guests' SSH user (default $VZ_SSH_KEY_FILE)")
	fs.StringVar(&c.SSHPasswordFile, "ssh-password-file", c.SSHPasswordFile, "0600 file whose first line is the guests' SSH password (default $VZ_SSH_PASSWORD_FILE)")
	fs.Var(&c.ConditionCheckInterval, "condition-check-interval", "how often node conditions are re-evaluated")
}

// flagsChanged returns the flags set on the command line, by name.
func flagsChanged(fs *pflag.FlagSet) map[string]string {
	out := map[string]string{}
	fs.Visit(func(f *pflag.Flag) { out[f.Name] = f.Value.String() })
	return out
}

// loadConfig builds the final configuration: defaults, then the config file,
// then the environment, then the flags given on the command line.
func loadConfig(fs *pflag.FlagSet, configPath string) (node.Config, error) {
	cfg := node.DefaultConfig()
	if configPath != "" {
		var err error
		if cfg, err = node.LoadConfigFile(configPath, cfg); err != nil {
			return cfg, err
		}
	}
	if err := node.ApplyEnv(&cfg, os.Getenv); err != nil {
		return cfg, err
	}
	scratch := pflag.NewFlagSet("final", pflag.ContinueOnError)
	bindFlags(scratch, &cfg)
	for name, val := range flagsChanged(fs) {
		if scratch.Lookup(name) == nil {
			continue
		}
		if err := scratch.Set(name, val); err != nil {
			return cfg, fmt.Errorf("--%s: %w", name, err)
		}
	}
	return cfg, nil
}
