package fleet

import (
	"context"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/vzfleet/vzfleet/fleet/remote"
	"github.com/vzfleet/vzfleet/inventory"
)

// Retiring a host takes it out of the fleet, in the order that loses no
// work: its node is cordoned and drained (its pods evicted, as kubectl
// drain does, and waited for until vz-node has stopped their VMs), then
// vz-node's launchd job is booted out, everything apply installed is
// removed, and the Node object is deleted. A host whose pods do not leave
// within the drain timeout fails at the drain and keeps running vz-node,
// cordoned; applying it again brings it back.

// DefaultDrainTimeout bounds how long a retire waits for a node's pods
// when Options.DrainTimeout is not set.
const DefaultDrainTimeout = 15 * time.Minute

// Retire's host outcomes: taken out of the fleet, or would be (a dry run).
const (
	StatusRetired     Status = "retired"
	StatusWouldRetire Status = "would retire"
)

// drainPoll is how often a drain looks at the pods left on the node.
const drainPoll = time.Second

type drainPhase struct{}

func (drainPhase) ownBound() {} // Options.DrainTimeout

func (drainPhase) name() string { return "drain" }
func (drainPhase) run(ctx context.Context, hr *hostRun) error {
	kube, err := hr.useKube()
	if err != nil {
		return err
	}
	node := hr.h.Node.Name
	err = cordon(ctx, kube, node)
	if apierrors.IsNotFound(err) {
		hr.r.progress(hr.h.Name, "node %s is not registered: nothing to drain", node)
		return nil
	}
	if err != nil {
		return err
	}
	hr.r.progress(hr.h.Name, "node %s cordoned; draining it (up to %s)", node, hr.r.opts.DrainTimeout)
	ctx, cancel := context.WithTimeout(ctx, hr.r.opts.DrainTimeout)
	defer cancel()
	evicted := map[types.UID]bool{}
	var left []corev1.Pod // as last listed
	for {
		pods, err := podsOn(ctx, kube, node)
		switch {
		case err == nil && len(pods) == 0:
			return nil
		case err == nil:
			left = pods
		case ctx.Err() == nil:
			return err
		}
		var blocked []string
		for _, p := range left {
			if p.DeletionTimestamp != nil || evicted[p.UID] {
				continue
			}
			err := evict(ctx, kube, p)
			switch {
			case err == nil:
				evicted[p.UID] = true
				hr.r.progress(hr.h.Name, "evicting pod %s/%s", p.Namespace, p.Name)
			case apierrors.IsTooManyRequests(err):
				blocked = append(blocked, fmt.Sprintf("%s/%s (%v)", p.Namespace, p.Name, err))
			case !apierrors.IsNotFound(err) && ctx.Err() == nil:
				return fmt.Errorf("evict pod %s/%s: %w", p.Namespace, p.Name, err)
			}
		}
		select {
		case <-time.After(drainPoll):
			continue
		case <-ctx.Done():
		}
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			names := podNames(left)
			why := ""
			if len(blocked) > 0 {
				why = "; eviction refused for " + strings.Join(blocked, ", ")
			}
			return fmt.Errorf("node %s still runs %d pod(s) after %s (%s)%s: it stays cordoned and vz-node stays installed; wait for them and retire again, raise --drain-timeout, or delete them", node, len(left), hr.r.opts.DrainTimeout, strings.Join(names, ", "), why)
		}
		return ctx.Err()
	}
}

// podsOn lists the pods bound to node that a drain waits for: all but
// those of DaemonSets, which the DaemonSet controller would put back, and
// which go with the Node object.
func podsOn(ctx context.Context, kube kubernetes.Interface, node string) ([]corev1.Pod, error) {
	list, err := kube.CoreV1().Pods(metav1.NamespaceAll).List(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("spec.nodeName", node).String()})
	if err != nil {
		return nil, fmt.Errorf("list the pods on node %s: %w", node, err)
	}
	return slices.DeleteFunc(list.Items, func(p corev1.Pod) bool {
		ref := metav1.GetControllerOf(&p)
		return ref != nil && ref.Kind == "DaemonSet"
	}), nil
}

// podNames are pods as namespace/name.
func podNames(pods []corev1.Pod) []string {
	names := make([]string, len(pods))
	for i, p := range pods {
		names[i] = p.Namespace + "/" + p.Name
	}
	return names
}

// cordon marks node unschedulable; a missing node is an IsNotFound error.
func cordon(ctx context.Context, kube kubernetes.Interface, node string) error {
	_, err := kube.CoreV1().Nodes().Patch(ctx, node, types.StrategicMergePatchType, []byte(`{"spec":{"unschedulable":true}}`), metav1.PatchOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("cordon node %s: %w", node, err)
	}
	return err
}

// evict asks the API server to evict p, which honours its
// PodDisruptionBudgets (TooManyRequests when one forbids it now) and its
// termination grace period.
func evict(ctx context.Context, kube kubernetes.Interface, p corev1.Pod) error {
	return kube.PolicyV1().Evictions(p.Namespace).Evict(ctx, &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace}})
}

type stopPhase struct{}

func (stopPhase) name() string { return "stop" }
func (stopPhase) run(ctx context.Context, hr *hostRun) error {
	l := launchd{host: hr.conn, label: hr.h.Paths.LaunchdLabel, plist: hr.h.Paths.Plist, pause: hr.r.opts.LaunchdPause}
	_, err := l.run(ctx, "bootout", l.target())
	var le *LaunchctlError
	switch {
	case errors.As(err, &le) && le.NotLoaded():
		return nil
	case err != nil:
		return err
	}
	hr.r.progress(hr.h.Name, "launchctl bootout %s", l.target())
	return l.waitGone(ctx, 30*time.Second)
}

type removePhase struct{}

func (removePhase) name() string { return "remove" }
func (removePhase) run(ctx context.Context, hr *hostRun) error {
	files, dirs, err := retiredPaths(hr.h, hr.r.opts.Purge)
	if err != nil {
		return err
	}
	var script strings.Builder
	script.WriteString("set -e\n")
	for _, f := range files {
		fmt.Fprintf(&script, "rm -f -- %s\n", remote.Quote(f))
	}
	for _, d := range dirs {
		fmt.Fprintf(&script, "rm -rf -- %s\n", remote.Quote(d))
	}
	// The configuration directory goes when nothing else is left in it.
	fmt.Fprintf(&script, "rmdir -- %s 2>/dev/null || true\n", remote.Quote(hr.h.Paths.ConfigDir))
	if _, err := hr.conn.Run(ctx, remote.Cmd{Args: []string{"sh", "-c", script.String()}, Sudo: true}); err != nil {
		return fmt.Errorf("remove vz-node's files: %w", err)
	}
	hr.r.progress(hr.h.Name, "removed vz-node's files and %s", strings.Join(dirs, ", "))
	return nil
}

// retiredPaths are what a retire removes from host h: the files apply
// installs (with the copies it keeps for a rollback) and vz-node's state
// directory; with purge also its image cache and log. Directories are
// refused when they are a file system's top levels, which no inventory
// means.
func retiredPaths(h inventory.Host, purge bool) (files, dirs []string, err error) {
	for _, f := range append(managedPathList(h), statePath(h.Paths.ConfigDir)) {
		files = append(files, f, f+".prev")
	}
	dirs = []string{h.Paths.StateDir}
	if purge {
		dirs = append(dirs, h.Paths.CacheDir)
		files = append(files, h.Paths.Log)
	}
	for _, d := range dirs {
		if clean := path.Clean(d); !path.IsAbs(clean) || strings.Count(clean, "/") < 2 {
			return nil, nil, fmt.Errorf("refusing to remove %q: a directory this close to / is not vz-node's alone; set a dedicated paths.stateDir and paths.cacheDir", d)
		}
	}
	return files, dirs, nil
}

type deregisterPhase struct{}

func (deregisterPhase) name() string { return "deregister" }
func (deregisterPhase) run(ctx context.Context, hr *hostRun) error {
	err := hr.kube.CoreV1().Nodes().Delete(ctx, hr.h.Node.Name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete node %s: %w", hr.h.Node.Name, err)
	}
	if err == nil {
		hr.r.progress(hr.h.Name, "node %s deleted", hr.h.Node.Name)
	}
	return nil
}

type retirePlanPhase struct{}

func (retirePlanPhase) name() string { return "plan" }
func (retirePlanPhase) run(ctx context.Context, hr *hostRun) error {
	kube, err := hr.useKube()
	if err != nil {
		return err
	}
	node := hr.h.Node.Name
	_, err = kube.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		hr.r.progress(hr.h.Name, "node %s is not registered: nothing to drain or delete", node)
	case err != nil:
		return fmt.Errorf("read node %s: %w", node, err)
	default:
		pods, err := podsOn(ctx, kube, node)
		if err != nil {
			return err
		}
		names := podNames(pods)
		hr.r.progress(hr.h.Name, "would cordon node %s and evict %d pod(s)%s, then delete the node", node, len(pods), listSuffix(names))
	}
	l := launchd{host: hr.conn, label: hr.h.Paths.LaunchdLabel, plist: hr.h.Paths.Plist, pause: hr.r.opts.LaunchdPause}
	st, err := l.state(ctx)
	if err != nil {
		return err
	}
	hr.r.progress(hr.h.Name, "would boot out %s (%s)", l.target(), st)
	files, dirs, err := retiredPaths(hr.h, hr.r.opts.Purge)
	if err != nil {
		return err
	}
	res, err := hr.conn.Run(ctx, remote.Cmd{Args: append([]string{"sh", "-c", `for p do [ -e "$p" ] && echo "$p"; done; true`, "sh"}, append(files, dirs...)...), Sudo: true})
	if err != nil {
		return fmt.Errorf("list vz-node's files: %w", err)
	}
	var present []string // one per line: paths hold spaces
	for p := range strings.Lines(string(res.Stdout)) {
		if p = strings.TrimSuffix(p, "\n"); p != "" {
			present = append(present, p)
		}
	}
	hr.r.progress(hr.h.Name, "would remove %d path(s)%s", len(present), listSuffix(present))
	return nil
}

// listSuffix is ": a, b" for a non-empty list.
func listSuffix(items []string) string {
	if len(items) == 0 {
		return ""
	}
	return ": " + strings.Join(items, ", ")
}

// unreachablePhase retires a host that is gone for good (dead, wiped,
// stolen) without contacting it: it cordons the node, force-deletes its
// pods, whose VMs went with the host and which no vz-node will ever
// confirm stopped, and deletes the node. A node whose lease is still being
// renewed has a live vz-node, and is refused: force-deleting its pods would
// leave their VMs running unmanaged.
type unreachablePhase struct{}

func (unreachablePhase) name() string { return "unreachable" }
func (unreachablePhase) run(ctx context.Context, hr *hostRun) error {
	kube, err := hr.useKube()
	if err != nil {
		return err
	}
	node := hr.h.Node.Name
	lease, err := kube.CoordinationV1().Leases(corev1.NamespaceNodeLease).Get(ctx, node, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		return fmt.Errorf("read the lease of node %s: %w", node, err)
	case lease.Spec.RenewTime != nil && lease.Spec.LeaseDurationSeconds != nil:
		age, ttl := time.Since(lease.Spec.RenewTime.Time), time.Duration(*lease.Spec.LeaseDurationSeconds)*time.Second
		if age < ttl {
			return fmt.Errorf("node %s renewed its lease %s ago: its vz-node is alive, so the host is not gone; retire it without --unreachable (a host that just went away counts as gone %s after its last renewal)", node, age.Round(time.Second), ttl)
		}
	}
	_, err = kube.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		hr.r.progress(hr.h.Name, "node %s is not registered: nothing to do", node)
		return nil
	}
	if err != nil {
		return fmt.Errorf("read node %s: %w", node, err)
	}
	pods, err := podsOn(ctx, kube, node)
	if err != nil {
		return err
	}
	names := podNames(pods)
	if hr.r.opts.DryRun {
		hr.r.progress(hr.h.Name, "would delete node %s and force-delete its %d pod(s)%s, without contacting the host", node, len(pods), listSuffix(names))
		return nil
	}
	if err := cordon(ctx, kube, node); err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	now := int64(0)
	for _, p := range pods {
		err := kube.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: &now})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("force-delete pod %s/%s: %w", p.Namespace, p.Name, err)
		}
		hr.r.progress(hr.h.Name, "force-deleted pod %s/%s (its VM went with the host)", p.Namespace, p.Name)
	}
	if err := (deregisterPhase{}).run(ctx, hr); err != nil {
		return err
	}
	hr.r.progress(hr.h.Name, "the host was not contacted: should it come back, its vz-node registers the node again; retire it then without --unreachable")
	return nil
}
