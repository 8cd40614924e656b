package image

import (
	"fmt"
	"io"
	"text/tabwriter"
)

// Write renders the description for people (`fleetctl image inspect`);
// with chunks it lists every disk chunk too.
func (d *Description) Write(w io.Writer, chunks bool) error {
	im := d.Image
	var compressed int64
	for _, c := range im.Disk {
		compressed += c.Layer.Size
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "Reference:\t%s\n", d.Reference)
	fmt.Fprintf(tw, "Digest:\t%s\n", d.Digest)
	fmt.Fprintf(tw, "Layout:\t%s\n", im.Layout)
	ratio := 0.0
	if im.DiskSize > 0 {
		ratio = 100 * float64(compressed) / float64(im.DiskSize)
	}
	fmt.Fprintf(tw, "Disk:\t%s in %d chunk(s), %s compressed (%.1f%%)\n", HumanBytes(im.DiskSize), len(im.Disk), HumanBytes(compressed), ratio)
	fmt.Fprintf(tw, "NVRAM:\t%s\n", HumanBytes(im.NVRAM.Size))
	if vm := d.VM; vm != nil {
		fmt.Fprintf(tw, "VM:\t%s/%s, %d CPU (min %d), %s memory (min %s)\n", vm.OS, vm.Arch, vm.CPUCount, vm.CPUCountMin, HumanBytes(int64(vm.MemorySize)), HumanBytes(int64(vm.MemorySizeMin)))
		fmt.Fprintf(tw, "Display:\t%dx%d%s\n", vm.Display.Width, vm.Display.Height, vm.Display.Unit)
		fmt.Fprintf(tw, "MAC address:\t%s\n", vm.MACAddress)
		fmt.Fprintf(tw, "Disk format:\t%s\n", vm.DiskFormat)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if !chunks {
		return nil
	}
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "CHUNK\tOFFSET\tSIZE\tCOMPRESSED\t UNCOMPRESSED DIGEST\t")
	for _, c := range im.Disk {
		fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t %s\t\n", c.Index, c.Offset, HumanBytes(c.Size), HumanBytes(c.Layer.Size), c.Digest)
	}
	return tw.Flush()
}

// HumanBytes formats a byte count with binary units (1.5 GiB).
func HumanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
