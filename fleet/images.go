package fleet

import (
	"context"
	"fmt"
	"strings"
)

// imagesPhase pre-pulls the host's inventory images once its node is
// Ready, with the prepull machinery on the host's connection, at most
// Options.MaxPulls hosts at once. A failed pull fails this step only: the
// node keeps what was installed (it is Ready), nothing is rolled back.
type imagesPhase struct{}

func (imagesPhase) ownBound() {} // a pull may take hours: PhaseTimeout bounds its stalls instead

func (imagesPhase) name() string { return "images" }

// keepsInstall: a failure here leaves the installed files in place.
func (imagesPhase) keepsInstall() bool { return true }

func (imagesPhase) run(ctx context.Context, hr *hostRun) error {
	refs := hr.h.Images
	hr.res.ImagesListed = len(refs)
	if len(refs) == 0 {
		return nil
	}
	select {
	case hr.r.pulls <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-hr.r.pulls }()
	var failed []string
	for _, ref := range refs {
		p := PullProgress{Host: hr.h.Name, Ref: ref, State: PullWaiting}
		opts := PrepullOptions{Ref: ref, Policy: hr.r.opts.PullPolicy, Insecure: hr.r.opts.InsecureRegistries, StallTimeout: hr.r.opts.PhaseTimeout}
		if opts.Policy == "" {
			opts.Policy = "IfNotPresent"
		}
		hr.r.progress(hr.h.Name, "pulling image %s (%s)", ref, opts.Policy)
		err := pullOn(ctx, hr.conn, hr.h, opts, &p, func(p *PullProgress, f func()) { f() })
		switch {
		case err != nil:
			p.State, p.Err = PullFailed, err
		case p.State != PullDone:
			p.State, p.Err = PullFailed, fmt.Errorf("vz-node pull of %s on %s ended without reporting the image as done", ref, hr.h.Name)
		}
		hr.res.Images = append(hr.res.Images, p)
		if p.State == PullFailed {
			failed = append(failed, fmt.Sprintf("%s: %v", ref, p.Err))
			hr.r.progress(hr.h.Name, "image %s: failed: %v", ref, p.Err)
			continue
		}
		hr.r.progress(hr.h.Name, "image %s: %s", ref, strings.TrimPrefix(FormatPullProgress(p), hr.h.Name+": "))
	}
	if len(failed) > 0 {
		return fmt.Errorf("pre-pulling %d of %d images failed (the node keeps running; rerun apply or fleetctl prepull): %s",
			len(failed), len(refs), strings.Join(failed, "; "))
	}
	return nil
}

// imagesSummary is the IMAGES column: pulled of listed, "-" for none.
func imagesSummary(h HostResult, listed int) string {
	if listed == 0 {
		return "-"
	}
	done := 0
	for _, p := range h.Images {
		if p.State == PullDone {
			done++
		}
	}
	return fmt.Sprintf("%d/%d", done, listed)
}
