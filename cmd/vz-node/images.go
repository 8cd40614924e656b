package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/vzfleet/vzfleet/image"
	"github.com/vzfleet/vzfleet/node"
)

// cachedImage is one entry of `vz-node images -o json`.
type cachedImage struct {
	Digest    string    `json:"digest"`
	Refs      []string  `json:"refs"`
	Disk      string    `json:"disk"`
	DiskSize  int64     `json:"diskSize"`
	Allocated int64     `json:"allocated"`
	LastUsed  time.Time `json:"lastUsed"`
	PulledAt  time.Time `json:"pulledAt"`
}

func newImagesCommand() *cobra.Command {
	var cacheDir, output string
	cmd := &cobra.Command{
		Use:   "images",
		Short: "List the VM images in this host's image cache",
		Example: `  vz-node images
  vz-node images --cache-dir /var/lib/vz-node/cache -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "table" && output != "json" {
				return fmt.Errorf("--output %q: want table or json", output)
			}
			cache, err := image.OpenCache(node.OCICacheDir(cacheDir), image.Options{})
			if err != nil {
				return err
			}
			imgs, err := cache.List()
			if err != nil {
				return fmt.Errorf("listing images in %s: %w", cache.Dir(), err)
			}
			list := make([]cachedImage, 0, len(imgs))
			for _, im := range imgs {
				list = append(list, cachedImage{
					Digest: im.Digest.String(), Refs: im.Refs, Disk: im.Disk, DiskSize: im.DiskSize,
					Allocated: im.Allocated, LastUsed: im.LastUsed, PulledAt: im.PulledAt,
				})
			}
			out := cmd.OutOrStdout()
			if output == "json" {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(list)
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "REFERENCES\tDIGEST\tDISK\tON DISK\tLAST USED")
			for _, im := range list {
				refs := strings.Join(im.Refs, ",")
				if refs == "" {
					refs = "<none>"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", refs, shortDigest(im.Digest), image.HumanBytes(im.DiskSize),
					image.HumanBytes(im.Allocated), im.LastUsed.Format(time.RFC3339))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&cacheDir, "cache-dir", node.DefaultConfig().CacheDir, "vz-node's cacheDir (the pull engine's images are under its oci/)")
	cmd.Flags().StringVarP(&output, "output", "o", "table", "table or json")
	return cmd
}

func shortDigest(d string) string {
	if i := strings.IndexByte(d, ':'); i >= 0 && len(d) > i+13 {
		return d[:i+13]
	}
	return d
}
