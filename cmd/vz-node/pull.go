package main

import (
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/vzfleet/vzfleet/image"
	"github.com/vzfleet/vzfleet/node"
)

// pullEvent is one line of `vz-node pull --progress=json`: a progress report,
// the final result (Done with the image's digest and paths) or an error.
// fleetctl prepull reads these lines over SSH, so field names are an API.
type pullEvent struct {
	Reference   string  `json:"reference"`
	Digest      string  `json:"digest,omitempty"`
	BytesDone   int64   `json:"bytesDone"`
	BytesTotal  int64   `json:"bytesTotal"`
	Downloaded  int64   `json:"downloaded"`
	ChunksDone  int     `json:"chunksDone"`
	ChunksTotal int     `json:"chunksTotal"`
	Elapsed     float64 `json:"elapsedSeconds"`
	Done        bool    `json:"done,omitempty"`
	Disk        string  `json:"disk,omitempty"`
	Error       string  `json:"error,omitempty"`
}

type pullFlags struct {
	cacheDir, policy, progress string
	insecure, dockerConfigs    []string
	concurrency                int
}

func newPullCommand() *cobra.Command {
	f := pullFlags{cacheDir: node.DefaultConfig().CacheDir}
	cmd := &cobra.Command{
		Use:   "pull REF",
		Short: "Pull a VM image into this host's image cache",
		Long: `pull fetches an OCI VM image (tart's format or macOS-vz-kubelet's) into the
image cache vz-node boots VMs from. Chunks are fetched in parallel, verified
against their digests, and chunks the cache already holds are not downloaded
again; an interrupted pull resumes where it stopped.

Progress goes to stderr as text, or with --progress=json to stdout as one JSON
object per line (what fleetctl prepull reads over SSH); the last line has
"done": true, or "error" when the pull failed (the exit status is then 1).`,
		Example: `  # Pull an image, re-resolving its tag
  vz-node pull ghcr.io/cirruslabs/macos-sequoia-base:latest

  # Use the cached image when present; machine-readable progress
  vz-node pull registry.local:5000/ci/macos:15 --policy IfNotPresent --progress=json

  # A registry on the LAN without TLS
  vz-node pull 10.0.0.5:5000/macos:15 --insecure-registry 10.0.0.5:5000`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runPull(cmd, args[0], f)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&f.cacheDir, "cache-dir", f.cacheDir, "vz-node's cacheDir (the pull engine's images are under its oci/)")
	fs.StringVar(&f.policy, "policy", string(image.PullAlways), "Always (re-resolve the tag, fetch changed chunks) or IfNotPresent (use the cached image)")
	fs.StringVar(&f.progress, "progress", "text", "progress format: text (stderr) or json (one object per line on stdout)")
	fs.StringSliceVar(&f.insecure, "insecure-registry", nil, "registry host[:port] reached over plain HTTP (loopback always is)")
	fs.StringSliceVar(&f.dockerConfigs, "docker-config", nil, "docker config.json with registry credentials (repeatable)")
	fs.IntVar(&f.concurrency, "concurrency", 4, "disk chunks fetched at once")
	return cmd
}

func runPull(cmd *cobra.Command, ref string, f pullFlags) error {
	var policy image.PullPolicy
	switch image.PullPolicy(f.policy) {
	case image.PullAlways, image.PullIfNotPresent:
		policy = image.PullPolicy(f.policy)
	default:
		return fmt.Errorf("--policy %q: want Always or IfNotPresent", f.policy)
	}
	if f.progress != "text" && f.progress != "json" {
		return fmt.Errorf("--progress %q: want text or json", f.progress)
	}
	if _, err := image.ParseReference(ref); err != nil {
		return err
	}
	cache, err := image.OpenCache(node.OCICacheDir(f.cacheDir), image.Options{
		Remote:      image.Remote{Insecure: f.insecure, Auth: image.Auth{DockerConfigFiles: f.dockerConfigs}, UserAgent: "vz-node"},
		Concurrency: f.concurrency,
	})
	if err != nil {
		return err
	}
	start := time.Now()
	var report func(pullEvent)
	if f.progress == "json" {
		report = jsonReporter(cmd.OutOrStdout())
	} else {
		report = textReporter(cmd.ErrOrStderr())
	}
	img, err := cache.Pull(cmd.Context(), ref, image.PullOptions{
		Policy: policy,
		Progress: func(p image.Progress) {
			report(pullEvent{
				Reference: ref, Digest: p.Digest.String(),
				BytesDone: p.BytesDone, BytesTotal: p.BytesTotal, Downloaded: p.Downloaded,
				ChunksDone: p.ChunksDone, ChunksTotal: p.ChunksTotal,
				Elapsed: time.Since(start).Seconds(),
			})
		},
	})
	if err != nil {
		err = fmt.Errorf("pulling %s into %s: %w", ref, cache.Dir(), err)
		if f.progress == "json" {
			report(pullEvent{Reference: ref, Elapsed: time.Since(start).Seconds(), Error: err.Error()})
		}
		return err
	}
	report(pullEvent{
		Reference: ref, Digest: img.Digest.String(), Done: true, Disk: img.Disk,
		BytesDone: img.DiskSize, BytesTotal: img.DiskSize, Elapsed: time.Since(start).Seconds(),
	})
	return nil
}

func jsonReporter(w io.Writer) func(pullEvent) {
	var mu sync.Mutex
	enc := json.NewEncoder(w)
	return func(e pullEvent) {
		mu.Lock()
		defer mu.Unlock()
		_ = enc.Encode(e) // a closed pipe ends the pull through its context, not here
	}
}

// textReporter prints a line per second at most, and the final line.
func textReporter(w io.Writer) func(pullEvent) {
	var (
		mu   sync.Mutex
		last time.Time
	)
	return func(e pullEvent) {
		mu.Lock()
		defer mu.Unlock()
		if e.Done {
			fmt.Fprintf(w, "%s: pulled %s (%s) in %.1fs\n  disk: %s\n", e.Reference, e.Digest, image.HumanBytes(e.BytesTotal), e.Elapsed, e.Disk)
			return
		}
		if time.Since(last) < time.Second {
			return
		}
		last = time.Now()
		pct := 0.0
		if e.BytesTotal > 0 {
			pct = 100 * float64(e.BytesDone) / float64(e.BytesTotal)
		}
		rate := 0.0
		if e.Elapsed > 0 {
			rate = float64(e.Downloaded) / e.Elapsed
		}
		fmt.Fprintf(w, "%s: %s / %s (%.0f%%), chunks %d/%d, %s downloaded, %s/s\n", e.Reference,
			image.HumanBytes(e.BytesDone), image.HumanBytes(e.BytesTotal), pct, e.ChunksDone, e.ChunksTotal,
			image.HumanBytes(e.Downloaded), image.HumanBytes(int64(rate)))
	}
}
