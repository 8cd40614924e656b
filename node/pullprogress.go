package node

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"

	"github.com/vzfleet/vzfleet/image"
)

// AnnotationPullProgress on the Node describes the VM image pull under way
// ("registry/repo:tag 42%"), for `fleetctl status`; it is removed when the
// pull ends.
const AnnotationPullProgress = "vzfleet.dev/pull-progress"

// pullProgress publishes pull progress as a node annotation. Reports arrive
// from the pull engine's goroutines; the newest one wins, and the node is
// patched at most once per interval (plus once when a pull ends), from a
// goroutine of its own so a slow apiserver never slows a pull.
type pullProgress struct {
	nodes    corev1client.NodeInterface
	name     string
	interval time.Duration
	log      *slog.Logger
	latest   chan image.Progress
}

func newPullProgress(nodes corev1client.NodeInterface, name string, log *slog.Logger) *pullProgress {
	return &pullProgress{nodes: nodes, name: name, interval: 2 * time.Second, log: log, latest: make(chan image.Progress, 1)}
}

// report is the pull engine's Progress callback.
func (p *pullProgress) report(pr image.Progress) {
	for {
		select {
		case p.latest <- pr:
			return
		default:
		}
		// Replace a report not yet published; an end of pull is never dropped
		// in favour of an earlier report.
		select {
		case old := <-p.latest:
			if old.Done && !pr.Done {
				pr = old
			}
		default:
		}
	}
}

// run publishes reports until ctx ends.
func (p *pullProgress) run(ctx context.Context) {
	var last time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case pr := <-p.latest:
			if !pr.Done {
				if wait := p.interval - time.Since(last); wait > 0 {
					select {
					case <-ctx.Done():
						return
					case <-time.After(wait):
					}
					// A newer report may have arrived meanwhile.
					select {
					case newer := <-p.latest:
						pr = newer
					default:
					}
				}
			}
			last = time.Now()
			if err := p.publish(ctx, pr); err != nil {
				p.log.Warn("publishing image pull progress on the node", "err", err)
			}
		}
	}
}

func (p *pullProgress) publish(ctx context.Context, pr image.Progress) error {
	var value any // nil removes the annotation
	if !pr.Done {
		pct := 0
		if pr.BytesTotal > 0 {
			pct = int(pr.BytesDone * 100 / pr.BytesTotal)
		}
		value = fmt.Sprintf("%s %d%%", pr.Reference, pct)
	}
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]any{AnnotationPullProgress: value}}})
	if err != nil {
		return err
	}
	_, err = p.nodes.Patch(ctx, p.name, types.MergePatchType, patch, metav1.PatchOptions{})
	return err
}
