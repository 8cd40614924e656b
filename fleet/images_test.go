package fleet

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vzfleet/vzfleet/fleet/remote"
	"github.com/vzfleet/vzfleet/inventory"
)

// The images phase pulls each listed image with vz-node pull on the host's
// connection (IfNotPresent unless told), records every pull, fails the
// step naming the images that failed, and caps the hosts pulling at once.
func TestImagesPhase(t *testing.T) {
	dir := t.TempDir()
	lock, overlaps := filepath.Join(dir, "lock"), filepath.Join(dir, "overlaps")
	vzNode := fakeVZNode(t, dir, "vz-node", `test "$1" = pull && test "$5" = --progress=json && test "$6" = --policy && test "$7" = IfNotPresent || { echo "bad args: $*" >&2; exit 2; }
mkdir "`+lock+`" 2>/dev/null || echo overlap >> "`+overlaps+`"
sleep 0.1
rmdir "`+lock+`" 2>/dev/null
case $2 in
reg/ok:*) echo '{"reference":"'$2'","digest":"sha256:d","bytesDone":1024,"bytesTotal":1024,"elapsedSeconds":1,"done":true}' ;;
reg/silent:*) ;;
*) echo '{"reference":"'$2'","error":"pulling '$2': manifest unknown"}'; exit 1 ;;
esac
`)
	var out bytes.Buffer
	r := newRunner(ModeApply, nil, 3, Options{Out: &out, MaxPulls: 1})
	run := func(name string, images ...string) (*HostResult, error) {
		h := inventory.Host{Name: name, Images: images}
		h.Paths.Binary, h.Paths.CacheDir = vzNode, filepath.Join(dir, "cache-"+name)
		res := &HostResult{Host: name}
		hr := &hostRun{r: r, h: h, res: res, conn: remote.NewLocal(remote.LocalOptions{Name: name})}
		return res, imagesPhase{}.run(context.Background(), hr)
	}

	var wg sync.WaitGroup
	results := make([]*HostResult, 3)
	errs := make([]error, 3)
	for i, images := range [][]string{{"reg/ok:1", "reg/ok:2"}, {"reg/ok:1", "reg/missing:1", "reg/silent:1"}, nil} {
		wg.Go(func() { results[i], errs[i] = run([]string{"a", "b", "c"}[i], images...) })
	}
	wg.Wait()

	if errs[0] != nil || len(results[0].Images) != 2 || results[0].Images[1].Ref != "reg/ok:2" || results[0].Images[1].State != PullDone {
		t.Errorf("a: %v %+v", errs[0], results[0].Images)
	}
	if got := imagesSummary(*results[0], results[0].ImagesListed); got != "2/2" {
		t.Errorf("a: IMAGES %q, want 2/2", got)
	}
	if errs[1] == nil || !strings.Contains(errs[1].Error(), "2 of 3 images failed") ||
		!strings.Contains(errs[1].Error(), "reg/missing:1: pulling reg/missing:1: manifest unknown") ||
		!strings.Contains(errs[1].Error(), "reg/silent:1: vz-node pull of reg/silent:1 on b ended without reporting the image as done") {
		t.Errorf("b: %v", errs[1])
	}
	if got := imagesSummary(*results[1], results[1].ImagesListed); got != "1/3" {
		t.Errorf("b: IMAGES %q, want 1/3", got)
	}
	if errs[2] != nil || len(results[2].Images) != 0 || imagesSummary(*results[2], results[2].ImagesListed) != "-" {
		t.Errorf("c (no images): %v %+v", errs[2], results[2].Images)
	}
	if b, err := os.ReadFile(overlaps); err == nil {
		t.Errorf("hosts pulled at once with MaxPulls 1: %q", b)
	} else if !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	for _, want := range []string{"a:           pulling image reg/ok:1 (IfNotPresent)", "a:           image reg/ok:2: done", "b:           image reg/missing:1: failed"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("progress lacks %q:\n%s", want, out.String())
		}
	}
}

// An images step that fails leaves the host's install alone: the phase
// says so, and Run's loop does not roll back after it.
func TestImagesPhaseKeepsInstall(t *testing.T) {
	var p phase = imagesPhase{}
	k, ok := p.(interface{ keepsInstall() bool })
	if !ok || !k.keepsInstall() {
		t.Fatal("the images phase would roll back the node on a failed pull")
	}
	for _, p := range (&runner{mode: ModeApply}).phases() {
		if k, ok := p.(interface{ keepsInstall() bool }); ok && k.keepsInstall() && p.name() != "images" {
			t.Errorf("phase %s keeps a failed install", p.name())
		}
	}
}

func TestWriteSummaryGolden(t *testing.T) {
	rep := &Report{Mode: ModeApply, Hosts: []HostResult{
		{Host: "mini-01", Node: "mini-01", Status: StatusChanged, Version: "v0.2.0", Duration: 4200 * time.Millisecond,
			Plan: Plan{Changes: []Change{{Kind: Update}}, Service: ServiceKickstart}, ImagesListed: 2,
			Images: []PullProgress{{Ref: "reg/a:1", State: PullDone}, {Ref: "reg/b:1", State: PullDone}}},
		{Host: "mini-02", Node: "mini-02", Status: StatusFailed, Phase: "images", Version: "v0.2.0", Duration: 9 * time.Second,
			Err:  errors.New("pre-pulling 1 of 2 images failed (the node keeps running; rerun apply or fleetctl prepull): reg/b:1: manifest unknown"),
			Plan: Plan{Changes: []Change{{Kind: Update}}, Service: ServiceKickstart}, ImagesListed: 2,
			Images: []PullProgress{{Ref: "reg/a:1", State: PullDone}, {Ref: "reg/b:1", State: PullFailed}}},
		{Host: "mini-03", Node: "mini-03", Status: StatusUnchanged, Version: "v0.2.0", Duration: 300 * time.Millisecond},
	}}
	var b bytes.Buffer
	if err := rep.WriteSummary(&b); err != nil {
		t.Fatal(err)
	}
	golden(t, filepath.Join("testdata", "summary-apply.golden"), b.Bytes())
}
