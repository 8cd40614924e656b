package format

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
)

// Display is the VM's screen, as tart stores it.
type Display struct {
	Width  int    `json:"width"`
	Height int    `json:"height"`
	Unit   string `json:"unit,omitempty"` // "pt" or "px"
}

// VMConfig is tart's config.json: the VM config layer and the config.json
// of a VM directory. HardwareModel and ECID are the base64 of
// Virtualization.framework's VZMacHardwareModel and VZMacMachineIdentifier
// data representations.
type VMConfig struct {
	Version       int     `json:"version"`
	OS            string  `json:"os"`
	Arch          string  `json:"arch"`
	HardwareModel string  `json:"hardwareModel,omitempty"`
	ECID          string  `json:"ecid,omitempty"`
	CPUCountMin   int     `json:"cpuCountMin"`
	CPUCount      int     `json:"cpuCount"`
	MemorySizeMin uint64  `json:"memorySizeMin"`
	MemorySize    uint64  `json:"memorySize"`
	MACAddress    string  `json:"macAddress"`
	Display       Display `json:"display"`
	DisplayRefit  *bool   `json:"displayRefit,omitempty"`
	DiskFormat    string  `json:"diskFormat"`
}

// Disk formats tart knows.
const (
	DiskFormatRaw  = "raw"
	DiskFormatASIF = "asif"
)

// HardwareModelData decodes HardwareModel.
func (c *VMConfig) HardwareModelData() ([]byte, error) {
	return base64.StdEncoding.DecodeString(c.HardwareModel)
}

// MachineIdentifierData decodes ECID.
func (c *VMConfig) MachineIdentifierData() ([]byte, error) {
	return base64.StdEncoding.DecodeString(c.ECID)
}

// ParseVMConfig parses and validates tart's VM config JSON. Missing optional
// fields get tart's defaults (os darwin, arch arm64, disk format raw,
// display 1024x768); unknown fields are ignored as tart ignores them.
func ParseVMConfig(data []byte) (*VMConfig, error) {
	if len(data) > MaxConfigSize {
		return nil, invalid("VM config is %d bytes, more than the %d-byte limit", len(data), MaxConfigSize)
	}
	c := &VMConfig{}
	var probe struct {
		Version *int `json:"version"`
	}
	if err := json.Unmarshal(data, &probe); err != nil {
		return nil, invalid("VM config is not valid JSON: %v", err)
	}
	if probe.Version == nil {
		return nil, invalid("VM config has no \"version\" field; is this a tart config.json?")
	}
	if err := json.Unmarshal(data, c); err != nil {
		return nil, invalid("VM config: %v", err)
	}
	c.defaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *VMConfig) defaults() {
	if c.OS == "" {
		c.OS = "darwin"
	}
	if c.Arch == "" {
		c.Arch = "arm64"
	}
	if c.DiskFormat == "" {
		c.DiskFormat = DiskFormatRaw
	}
	if c.Display.Width == 0 && c.Display.Height == 0 {
		c.Display = Display{Width: 1024, Height: 768}
	}
}

// Validate checks the fields a VM needs to boot.
func (c *VMConfig) Validate() error {
	if c.Version != 1 {
		return invalid("VM config version %d is not supported (want 1)", c.Version)
	}
	switch c.OS {
	case "darwin":
		if c.HardwareModel == "" || c.ECID == "" {
			return invalid("macOS VM config needs hardwareModel and ecid")
		}
		if b, err := c.HardwareModelData(); err != nil || len(b) == 0 {
			return invalid("VM config hardwareModel is not base64 data")
		}
		if b, err := c.MachineIdentifierData(); err != nil || len(b) == 0 {
			return invalid("VM config ecid is not base64 data")
		}
	case "linux":
	default:
		return invalid("VM config os %q is not darwin or linux", c.OS)
	}
	if c.Arch != "arm64" && c.Arch != "amd64" {
		return invalid("VM config arch %q is not arm64 or amd64", c.Arch)
	}
	if c.CPUCount < 1 || c.CPUCount > 1024 {
		return invalid("VM config cpuCount %d is out of range 1..1024", c.CPUCount)
	}
	if c.CPUCountMin < 0 || c.CPUCountMin > c.CPUCount {
		return invalid("VM config cpuCountMin %d is not within 0..cpuCount (%d)", c.CPUCountMin, c.CPUCount)
	}
	if c.MemorySize < 1<<20 {
		return invalid("VM config memorySize %d is below 1 MiB", c.MemorySize)
	}
	if c.MemorySizeMin > c.MemorySize {
		return invalid("VM config memorySizeMin %d exceeds memorySize %d", c.MemorySizeMin, c.MemorySize)
	}
	if hw, err := net.ParseMAC(c.MACAddress); err != nil || len(hw) != 6 {
		return invalid("VM config macAddress %q is not a MAC address", c.MACAddress)
	}
	if c.DiskFormat != DiskFormatRaw && c.DiskFormat != DiskFormatASIF {
		return invalid("VM config diskFormat %q is not raw or asif", c.DiskFormat)
	}
	if c.Display.Width < 0 || c.Display.Height < 0 {
		return invalid("VM config display %dx%d is negative", c.Display.Width, c.Display.Height)
	}
	return nil
}

// Marshal encodes the config as tart writes it.
func (c *VMConfig) Marshal() ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	if err := enc.Encode(c); err != nil {
		return nil, fmt.Errorf("encode VM config: %w", err)
	}
	return buf.Bytes(), nil
}

// MacOSVZConfig is macOS-vz-kubelet's config layer.
type MacOSVZConfig struct {
	MediaType         string `json:"mediatype"`
	OS                string `json:"os"`
	HardwareModelData string `json:"hardwareModelData"`
	MachineIDData     string `json:"machineIdData"`
	Storage           []struct {
		MediaType string `json:"mediatype"`
		File      string `json:"file"`
	} `json:"storage"`
}

// VMConfigFromMacOSVZ converts macOS-vz-kubelet's config into a tart
// VMConfig. That format records no CPU, memory or MAC address (the pod's
// requests decide them), so mac is used and CPU and memory get tart's
// minimums for macOS; the caller overrides them.
func VMConfigFromMacOSVZ(data []byte, mac string) (*VMConfig, error) {
	if len(data) > MaxConfigSize {
		return nil, invalid("config is %d bytes, more than the %d-byte limit", len(data), MaxConfigSize)
	}
	var m MacOSVZConfig
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, invalid("macOS-vz-kubelet config is not valid JSON: %v", err)
	}
	if m.OS != "" && m.OS != "darwin" {
		return nil, invalid("macOS-vz-kubelet config os %q is not darwin", m.OS)
	}
	c := &VMConfig{
		Version:       1,
		OS:            "darwin",
		Arch:          "arm64",
		HardwareModel: m.HardwareModelData,
		ECID:          m.MachineIDData,
		CPUCountMin:   4,
		CPUCount:      4,
		MemorySizeMin: 4 << 30,
		MemorySize:    4 << 30,
		MACAddress:    mac,
		DiskFormat:    DiskFormatRaw,
	}
	c.defaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// StubConfig is the OCI image config tart pushes so registries that insist
// on an image config accept the manifest.
func StubConfig(vm *VMConfig, labels map[string]string) ([]byte, error) {
	l := map[string]string{LabelDiskFormat: vm.DiskFormat}
	for k, v := range labels {
		l[k] = v
	}
	type container struct {
		Labels map[string]string `json:"Labels"`
	}
	b, err := json.Marshal(struct {
		Architecture string    `json:"architecture"`
		OS           string    `json:"os"`
		Config       container `json:"config"`
	}{vm.Arch, vm.OS, container{l}})
	if err != nil {
		return nil, fmt.Errorf("encode OCI config: %w", err)
	}
	return b, nil
}
