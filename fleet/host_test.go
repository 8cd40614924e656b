package fleet

import "testing"

// Hosts share a signed binary's hash only when they installed the same
// binary signed with the same entitlements.
func TestSignedKey(t *testing.T) {
	bin := File{Kind: KindBinary, Path: "/usr/local/bin/vz-node", Sign: true, Content: []byte("v1")}
	plain := File{Kind: KindEntitlements, Path: "/e", Content: []byte("<plist/>")}
	bridged := File{Kind: KindEntitlements, Path: "/e", Content: []byte("<plist>bridged</plist>")}
	cfg := File{Kind: KindConfig, Path: "/c", Content: []byte("x")}
	a := signedKey([]File{bin}, []File{plain, bin})
	if a == "" || a != signedKey([]File{cfg, bin}, []File{plain, cfg, bin}) {
		t.Error("the same binary and entitlements give different keys")
	}
	if a == signedKey([]File{bin}, []File{bridged, bin}) {
		t.Error("different entitlements share a key")
	}
	if signedKey([]File{cfg}, []File{plain, cfg, bin}) != "" {
		t.Error("nothing signed was installed, yet a key")
	}
}
