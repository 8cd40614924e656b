package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/vzfleet/vzfleet/image"
)

func newImageCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "image",
		Short: "Push VM images to an OCI registry and inspect them",
	}
	cmd.AddCommand(newImagePushCommand(), newImageInspectCommand())
	return cmd
}

func newImagePushCommand() *cobra.Command {
	var (
		insecure    []string
		concurrency int
		chunkSize   int64
	)
	cmd := &cobra.Command{
		Use:   "push DIR REF",
		Short: "Package a VM directory in tart's format and push it",
		Long: `push packages a VM directory (disk.img, nvram.bin and config.json with the
hardware model and machine identifier, as tart and vz-node write them) in
tart's OCI format and pushes it as REF. The disk is cut into chunks that are
LZ4-compressed and uploaded in parallel; blobs the registry already has are
skipped, so pushing a new version of an image uploads only what changed.

Progress lines (bytes, rate) go to stderr; the pushed digest to stdout.`,
		Example: `  # Push a VM to a registry
  fleetctl image push ~/.tart/vms/sequoia registry.example.com/ci/macos:15

  # A registry without TLS on the LAN, smaller chunks
  fleetctl image push ./vm 10.0.0.5:5000/ci/macos:15 --insecure-registry 10.0.0.5:5000 --chunk-size 67108864`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir, ref := args[0], args[1]
			if chunkSize < 0 || (chunkSize > 0 && chunkSize%4096 != 0) {
				return fmt.Errorf("--chunk-size %d: want a positive multiple of 4096 bytes", chunkSize)
			}
			start := time.Now()
			desc, err := image.Push(cmd.Context(), dir, ref, image.PushOptions{
				Remote:      image.Remote{Insecure: insecure, Auth: image.Auth{DockerConfigFiles: dockerConfigFiles()}, UserAgent: "fleetctl"},
				Concurrency: concurrency,
				ChunkSize:   chunkSize,
				Progress:    pushReporter(cmd.ErrOrStderr(), ref, start),
			})
			if err != nil {
				return fmt.Errorf("pushing %s as %s: %w", dir, ref, err)
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "%s: pushed in %.1fs\n", ref, time.Since(start).Seconds())
			fmt.Fprintln(cmd.OutOrStdout(), desc.Digest)
			return nil
		},
	}
	fs := cmd.Flags()
	fs.StringSliceVar(&insecure, "insecure-registry", nil, "registry host[:port] reached over plain HTTP (loopback always is)")
	fs.IntVar(&concurrency, "concurrency", 0, "chunks compressed and uploaded at once (default: CPUs, at most 4)")
	fs.Int64Var(&chunkSize, "chunk-size", 0, "uncompressed bytes per disk chunk (default 512 MiB, tart's)")
	return cmd
}

// pushReporter prints a progress line per second at most, and one per
// finished chunk.
func pushReporter(w io.Writer, ref string, start time.Time) func(image.PushProgress) {
	var (
		mu     sync.Mutex
		last   time.Time
		chunks = -1
	)
	return func(p image.PushProgress) {
		mu.Lock()
		defer mu.Unlock()
		if p.ChunksDone == chunks && time.Since(last) < time.Second {
			return
		}
		last, chunks = time.Now(), p.ChunksDone
		secs := time.Since(start).Seconds()
		rate := 0.0
		if secs > 0 {
			rate = float64(p.BytesUploaded) / secs
		}
		fmt.Fprintf(w, "%s: %s / %s, chunks %d/%d (%d already in the registry), %s uploaded, %s/s\n", ref,
			image.HumanBytes(p.BytesDone), image.HumanBytes(p.BytesTotal), p.ChunksDone, p.ChunksTotal, p.ChunksSkipped,
			image.HumanBytes(p.BytesUploaded), image.HumanBytes(int64(rate)))
	}
}

func newImageInspectCommand() *cobra.Command {
	var (
		insecure []string
		chunks   bool
		output   string
	)
	cmd := &cobra.Command{
		Use:   "inspect REF",
		Short: "Show what a VM image in a registry holds, without pulling its disk",
		Example: `  fleetctl image inspect registry.example.com/ci/macos:15
  fleetctl image inspect registry.example.com/ci/macos:15 --chunks
  fleetctl image inspect registry.example.com/ci/macos:15 -o json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "text" && output != "json" {
				return fmt.Errorf("--output %q: want text or json", output)
			}
			d, err := image.Inspect(cmd.Context(), args[0], image.Remote{Insecure: insecure, Auth: image.Auth{DockerConfigFiles: dockerConfigFiles()}, UserAgent: "fleetctl"})
			if err != nil {
				return fmt.Errorf("inspecting %s: %w", args[0], err)
			}
			if output == "json" {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(d)
			}
			return d.Write(cmd.OutOrStdout(), chunks)
		},
	}
	fs := cmd.Flags()
	fs.StringSliceVar(&insecure, "insecure-registry", nil, "registry host[:port] reached over plain HTTP (loopback always is)")
	fs.BoolVar(&chunks, "chunks", false, "list every disk chunk")
	fs.StringVarP(&output, "output", "o", "text", "text or json")
	return cmd
}

// dockerConfigFiles is the docker config holding the user's registry logins
// ($DOCKER_CONFIG/config.json or ~/.docker/config.json), when there is one.
func dockerConfigFiles() []string {
	dir := os.Getenv("DOCKER_CONFIG")
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return nil
		}
		dir = filepath.Join(home, ".docker")
	}
	p := filepath.Join(dir, "config.json")
	if _, err := os.Stat(p); err != nil {
		return nil
	}
	return []string{p}
}
