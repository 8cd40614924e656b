package fleet

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/vzfleet/vzfleet/fleet/remote"
	"github.com/vzfleet/vzfleet/inventory"
)

// hostRun is one host's way through the phases.
type hostRun struct {
	r     *runner
	h     inventory.Host
	conn  remote.Host
	kube  kubernetes.Interface
	res   *HostResult
	files []File
	// installed are the changes already in place on the host; a failure
	// from then on rolls them back.
	installed []Change
	// uploaded: files on the host changed, so a failure from here on rolls
	// back; stateUploaded: the state file was replaced too.
	uploaded, stateUploaded bool
	// wantVersion is the vz-node version the node must report.
	wantVersion string
	// newVersion is what the newly installed binary reports.
	newVersion string
	// creds are the installed credentials the facts read (secret: never
	// printed).
	creds map[string][]byte
	// node is the host's Node as the API server had it while the SSH
	// phases ran (nil when there is none yet).
	node func(context.Context) (*corev1.Node, error)
}

// phase is one step with one job; it records its outcome in hr.res.
type phase interface {
	name() string
	run(ctx context.Context, hr *hostRun) error
}

// ownBound is implemented by phases whose whole run Options.PhaseTimeout
// does not bound: waiting for Ready has a timeout of its own, and a
// pre-pull is bounded by how long it goes without progress.
type ownBound interface{ ownBound() }

// phaseContext bounds a phase by Options.PhaseTimeout.
func (r *runner) phaseContext(ctx context.Context, p phase) (context.Context, context.CancelFunc) {
	if _, own := p.(ownBound); own {
		return context.WithCancel(ctx)
	}
	return r.bounded(ctx)
}

// bounded is ctx bounded by Options.PhaseTimeout, when there is one.
func (r *runner) bounded(ctx context.Context) (context.Context, context.CancelFunc) {
	if r.opts.PhaseTimeout <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, r.opts.PhaseTimeout)
}

func (r *runner) phases() []phase {
	switch r.mode {
	case ModeDoctor:
		return []phase{connectPhase{}, factsPhase{}, preflightPhase{}}
	case ModePlan:
		return []phase{connectPhase{}, factsPhase{}, preflightPhase{}, planPhase{}}
	case ModeRetire:
		if r.opts.Unreachable {
			return []phase{unreachablePhase{}}
		}
		if r.opts.DryRun {
			return []phase{connectPhase{}, retirePlanPhase{}}
		}
		return []phase{connectPhase{}, drainPhase{}, stopPhase{}, removePhase{}, deregisterPhase{}}
	default:
		return []phase{connectPhase{}, factsPhase{}, preflightPhase{}, planPhase{}, uploadPhase{}, servicePhase{}, nodePhase{}, imagesPhase{}}
	}
}

func (r *runner) host(ctx context.Context, h inventory.Host) HostResult {
	start := time.Now()
	res := HostResult{Host: h.Name, Node: h.Node.Name}
	hr := &hostRun{r: r, h: h, res: &res}
	if r.mode == ModeApply || r.mode == ModePlan {
		hr.node = r.nodeAhead(ctx, h)
	}
	defer func() {
		if hr.conn != nil {
			_ = hr.conn.Close()
		}
	}()
	for _, p := range r.phases() {
		if err := ctx.Err(); err != nil {
			res.Status, res.Phase, res.Err = StatusFailed, p.name(), err
			break
		}
		began := time.Now()
		pctx, cancel := r.phaseContext(ctx, p)
		err := p.run(pctx, hr)
		if err != nil && ctx.Err() == nil && errors.Is(pctx.Err(), context.DeadlineExceeded) {
			err = fmt.Errorf("%s did not finish within %s (is the host hung? --phase-timeout sets this bound): %w", p.name(), r.opts.PhaseTimeout, err)
		}
		cancel()
		res.Phases = append(res.Phases, PhaseTime{Phase: p.name(), Duration: time.Since(began)})
		if err != nil {
			res.Status, res.Phase, res.Err = StatusFailed, p.name(), err
			if k, ok := p.(interface{ keepsInstall() bool }); ok && k.keepsInstall() {
				break
			}
			if hr.uploaded && r.mode == ModeApply {
				hr.rollback(ctx, err)
			}
			break
		}
	}
	if res.Status == "" {
		switch {
		case r.mode == ModeDoctor:
			res.Status = StatusOK
		case r.mode == ModeRetire && r.opts.DryRun:
			res.Status = StatusWouldRetire
		case r.mode == ModeRetire:
			res.Status = StatusRetired
		case res.Plan.Empty():
			res.Status = StatusUnchanged
		case r.mode == ModePlan:
			res.Status = StatusPlanned
		default:
			res.Status = StatusChanged
		}
	}
	res.Duration = time.Since(start)
	timings := make([]string, len(res.Phases))
	for i, p := range res.Phases {
		timings[i] = fmt.Sprintf("%s %s", p.Phase, p.Duration.Round(time.Millisecond))
	}
	r.progress(h.Name, "%s in %s (%s)", strings.ToLower(string(res.Status)), res.Duration.Round(time.Millisecond), strings.Join(timings, ", "))
	return res
}

func (r *runner) progress(host, format string, args ...any) {
	r.out.printf("%-12s %s\n", host+":", fmt.Sprintf(format, args...))
}

type connectPhase struct{}

func (connectPhase) name() string { return "connect" }
func (connectPhase) run(ctx context.Context, hr *hostRun) error {
	conn, err := hr.r.opts.Connect(ctx, hr.h)
	if err != nil {
		return err
	}
	hr.conn = conn
	return nil
}

type factsPhase struct{}

func (factsPhase) name() string { return "facts" }
func (factsPhase) run(ctx context.Context, hr *hostRun) error {
	p := hr.h.Paths
	f, creds, err := gatherFacts(ctx, hr.conn, p.Binary, p.CacheDir, p.LaunchdLabel, p.ConfigDir, managedPathList(hr.h),
		[]string{p.Kubeconfig(), p.ServingCert(), p.ServingKey()})
	if err != nil {
		return err
	}
	hr.creds = creds
	hr.res.Facts = f
	hr.res.Version = f.InstalledVersion
	hr.r.progress(hr.h.Name, "macOS %s %s, vz-node %s, launchd job %s", orUnknown(f.MacOSVersion), f.Arch, orUnknown(f.InstalledVersion), f.Job)
	return nil
}

type preflightPhase struct{}

func (preflightPhase) name() string { return "preflight" }
func (preflightPhase) run(_ context.Context, hr *hostRun) error {
	hr.res.Checks = preflight(hr.res.Facts, hr.r.req)
	failed := failedChecks(hr.res.Checks)
	if len(failed) == 0 {
		return nil
	}
	msgs := make([]string, len(failed))
	for i, c := range failed {
		msgs[i] = fmt.Sprintf("%s (%s): %s", c.Name, c.Detail, c.Fix)
	}
	return fmt.Errorf("preflight failed: %s", strings.Join(msgs, "; "))
}

type planPhase struct{}

func (planPhase) name() string { return "plan" }
func (planPhase) run(ctx context.Context, hr *hostRun) error {
	if _, err := hr.useKube(); err != nil {
		return err
	}
	binarySum, binarySize, err := hr.r.binaryInfo()
	if err != nil {
		return err
	}
	s, err := hr.secrets(ctx)
	if err != nil {
		return err
	}
	files, err := desiredFiles(hr.h, binarySum, binarySize, s)
	if err != nil {
		return err
	}
	hr.files = files
	p := computePlan(files, hr.res.Facts)
	for i := range p.Changes {
		c := &p.Changes[i]
		if c.Kind != Update || c.File.Secret || c.File.Kind == KindBinary {
			continue
		}
		if old, err := hr.cat(ctx, c.File.Path, false); err == nil {
			c.Diff = lineDiff(string(old), string(c.File.Content))
		}
	}
	n, err := hr.node(ctx)
	if err != nil {
		return err
	}
	_, p.Node = nodeMeta(n, hr.h.Node.Labels, hr.h.Node.Taints)
	hr.res.Plan = p
	if p.Empty() {
		hr.r.progress(hr.h.Name, "up to date")
	} else {
		var b bytes.Buffer
		fmt.Fprintf(&b, "%-12s plan:\n", hr.h.Name+":")
		p.Write(&b, "  ")
		hr.r.out.write(b.Bytes())
	}
	return nil
}

// nodeAhead reads h's Node from the API server while the SSH phases run,
// so planning does not wait for it; the function it returns waits for the
// answer.
func (r *runner) nodeAhead(ctx context.Context, h inventory.Host) func(context.Context) (*corev1.Node, error) {
	type answer struct {
		node *corev1.Node
		err  error
	}
	ch := make(chan answer, 1)
	go func() {
		ctx, cancel := r.bounded(ctx)
		defer cancel()
		kube, err := r.kubeFor(h)
		if err != nil {
			ch <- answer{err: err}
			return
		}
		n, err := getNode(ctx, kube, h.Node.Name)
		ch <- answer{n, err}
	}()
	return func(ctx context.Context) (*corev1.Node, error) {
		select {
		case a := <-ch:
			return a.node, a.err
		case <-ctx.Done():
			return nil, fmt.Errorf("reading node %s: %w", h.Node.Name, ctx.Err())
		}
	}
}

// useKube returns the operator's client for the host's cluster, and keeps
// it for the phases after.
func (hr *hostRun) useKube() (kubernetes.Interface, error) {
	kube, err := hr.r.kubeFor(hr.h)
	hr.kube = kube
	return kube, err
}

// cat reads a file on the host with sudo; sensitive reads keep it out of
// errors and logs.
func (hr *hostRun) cat(ctx context.Context, file string, sensitive bool) ([]byte, error) {
	res, err := hr.conn.Run(ctx, remote.Cmd{Args: []string{"cat", file}, Sudo: true, Sensitive: sensitive})
	if err != nil {
		return nil, err
	}
	return res.Stdout, nil
}

// secrets resolves the host's credentials: installed ones are kept while
// they are valid, so re-applying changes nothing; new ones are minted only
// when applying (a plan shows them as changes).
func (hr *hostRun) secrets(ctx context.Context) (secrets, error) {
	h := hr.h
	server, caPEM, err := hr.r.cluster(h.Cluster.OperatorKubeconfig)
	if err != nil {
		return secrets{}, err
	}
	if h.Cluster.APIServer != "" {
		server = h.Cluster.APIServer
	}
	s := secrets{caPEM: caPEM}
	now := time.Now()
	dry := hr.r.mode != ModeApply
	// The facts read the installed credentials; unreadable ones are
	// minted again.
	installed := func(p string) []byte { return hr.creds[p] }

	switch ref := h.Cluster.NodeCredentials.Kubeconfig; {
	case ref != nil:
		if s.kubeconfig, err = ref.Read(hr.r.opts.LookupEnv); err != nil {
			return s, fmt.Errorf("node kubeconfig for %s: %w", h.Name, err)
		}
	default:
		if old := installed(h.Paths.Kubeconfig()); old != nil && usableNodeKubeconfig(old, server, caPEM, h.Node.Name, now) {
			s.kubeconfig = old
		} else if dry {
			s.kubeconfig = []byte("(a client certificate would be minted for system:node:" + h.Node.Name + ")")
		} else {
			hr.r.progress(h.Name, "minting a client certificate for system:node:%s (CSR)", h.Node.Name)
			kp, err := MintNodeCert(ctx, hr.kube, h.Node.Name, nil, nil, hr.r.opts.CSRTimeout)
			if err != nil {
				return s, err
			}
			if s.kubeconfig, err = NodeKubeconfig(server, caPEM, h.Node.Name, kp); err != nil {
				return s, err
			}
		}
	}

	ips, dns := servingNames(h, hr.res.Facts)
	oldCert, oldKey := installed(h.Paths.ServingCert()), installed(h.Paths.ServingKey())
	switch {
	case oldCert != nil && oldKey != nil && certUsable(oldCert, caPEM, h.Node.Name, ips, dns, now) && keyMatches(oldCert, oldKey):
		s.serving = KeyPair{Cert: oldCert, Key: oldKey}
	case dry:
		s.serving = KeyPair{Cert: []byte("(a serving certificate would be minted)"), Key: []byte("(with a new key)")}
	default:
		hr.r.progress(h.Name, "minting a kubelet serving certificate for %s (CSR)", strings.Join(append(ipStrings(ips), dns...), ", "))
		if s.serving, err = MintNodeCert(ctx, hr.kube, h.Node.Name, ips, dns, hr.r.opts.CSRTimeout); err != nil {
			return s, err
		}
	}

	if r := h.GuestSSH.PrivateKey; r != nil {
		if s.guestKey, err = r.Read(hr.r.opts.LookupEnv); err != nil {
			return s, fmt.Errorf("guest SSH key for %s: %w", h.Name, err)
		}
	}
	if r := h.GuestSSH.Password; r != nil {
		if s.guestPassword, err = r.Read(hr.r.opts.LookupEnv); err != nil {
			return s, fmt.Errorf("guest SSH password for %s: %w", h.Name, err)
		}
	}
	return s, nil
}

func servingNames(h inventory.Host, f Facts) (ips []net.IP, dns []string) {
	if ip := nodeIP(h); ip != nil {
		ips = append(ips, ip)
	} else {
		dns = append(dns, h.SSH.Address)
	}
	if f.Hostname != "" && f.Hostname != h.SSH.Address {
		dns = append(dns, f.Hostname)
	}
	return ips, dns
}

type uploadPhase struct{}

func (uploadPhase) name() string { return "upload" }

// installedScript prints "sha <sum> <path>" for each file given with a
// leading "+", then "stat <size> <mtime> <inode> <path>" for each file
// that exists, from one run of stat (GNU or BSD).
const installedScript = hashCmd + `for f do
	shift
	case $f in +*) f=${f#+}; if [ -f "$f" ]; then echo "sha $(sum "$f" | cut -d' ' -f1) $f"; fi;; esac
	if [ -f "$f" ]; then set -- "$@" "$f"; fi
done
[ $# -gt 0 ] || exit 0
if stat -c %s / >/dev/null 2>&1; then exec stat -c 'stat %s %Y %i %n' "$@"; fi
exec stat -f 'stat %z %m %i %N' "$@"`

// signedKey names what a signed file's installed hash depends on: its
// source and the entitlements it is signed with ("" when nothing signed
// was installed, so nothing is shared).
func signedKey(installed, desired []File) string {
	var key []string
	for _, f := range installed {
		if f.Sign {
			key = append(key, "signed "+f.Path+" "+f.SHA256())
		}
	}
	if len(key) == 0 {
		return ""
	}
	for _, f := range desired {
		if f.Kind == KindEntitlements {
			key = append(key, "entitlements "+f.SHA256())
		}
	}
	return strings.Join(key, "\n")
}

func (uploadPhase) run(ctx context.Context, hr *hostRun) error {
	p := hr.res.Plan
	if len(p.Changes) == 0 {
		return nil
	}
	h := hr.h
	dirs := dirsFor(h)
	clean := uniq(append(dirs[:1:1], path.Dir(h.Paths.Binary), path.Dir(h.Paths.Plist)))
	if err := remote.PrepareDirs(ctx, hr.conn, dirs, clean, true); err != nil {
		return err
	}
	state := hr.res.Facts.State
	for _, batch := range uploadBatches(p.Changes) {
		n, err := hr.uploadBatch(ctx, batch)
		for _, c := range batch[:n] {
			hr.uploaded = true
			hr.installed = append(hr.installed, c)
			state.Files[c.File.Path] = installedFile{Source: c.File.SHA256(), Installed: c.File.SHA256()}
			hr.r.progress(h.Name, "installed %s %s", c.File.Kind, c.File.Path)
		}
		if err != nil {
			return err
		}
	}

	// One command: what the installed files look like now. A signed
	// file's hash is the same on every host (ad hoc signing is
	// deterministic), so the first host to get here hashes it for all.
	installed := make([]File, len(hr.installed))
	for i, c := range hr.installed {
		installed[i] = c.File
	}
	err := hr.r.shared(signedKey(installed, hr.files), func(known string) (string, error) {
		args := []string{"sh", "-c", installedScript, "sh"}
		for _, c := range hr.installed {
			if c.File.Sign && known == "" {
				args = append(args, "+"+c.File.Path)
			} else {
				args = append(args, c.File.Path)
			}
		}
		res, err := hr.conn.Run(ctx, remote.Cmd{Args: args, Sudo: true})
		if err != nil {
			return "", fmt.Errorf("checking the installed files: %w", err)
		}
		now := newFacts()
		if err := now.parseLines(string(res.Stdout)); err != nil {
			return "", fmt.Errorf("checking the installed files: %w", err)
		}
		for _, c := range hr.installed {
			rec := state.Files[c.File.Path]
			rec.Stat = now.Stats[c.File.Path]
			if c.File.Sign {
				if known == "" {
					known = now.Hashes[c.File.Path]
				}
				if rec.Installed = known; known == "" {
					return "", fmt.Errorf("checking the installed files: no sha256 for %s", c.File.Path)
				}
			}
			state.Files[c.File.Path] = rec
		}
		return known, nil
	})
	if err != nil {
		return err
	}
	if state.Version, err = hr.binaryVersion(ctx); err != nil {
		return err
	}
	sp := statePath(h.Paths.ConfigDir)
	if _, err := remote.UploadAll(ctx, hr.conn, []remote.Upload{{Path: sp, Content: bytes.NewReader(state.encode()), Mode: 0o644, Owner: "0", Group: "0", Sudo: true, KeepPrevious: true}}); err != nil {
		return err
	}
	hr.stateUploaded = true
	return nil
}

// uploadBatch uploads a batch of changed files and returns how many, from
// the first, are in place.
func (hr *hostRun) uploadBatch(ctx context.Context, batch []Change) (int, error) {
	h := hr.h
	ups := make([]remote.Upload, len(batch))
	for i, c := range batch {
		f := c.File
		var content io.Reader = bytes.NewReader(f.Content)
		maybeSigned := func() (bool, error) { return bytes.Contains(f.Content, []byte(virtualizationEntitlement)), nil }
		if f.Kind == KindBinary && f.Content == nil {
			bin, size, err := hr.r.openBinary()
			if err != nil {
				return 0, err
			}
			defer bin.Close()
			content, maybeSigned = io.NewSectionReader(bin, 0, size), hr.r.binaryMaybeSigned
		}
		ups[i] = remote.Upload{
			Path: f.Path, Content: content, SHA256: f.SHA256(),
			Mode: f.Mode, Owner: f.Owner, Group: f.Group, Sudo: true, KeepPrevious: true,
		}
		if f.Sign {
			ups[i].Before = signer(h.Paths.Entitlements(), maybeSigned)
		}
	}
	n, err := remote.UploadAll(ctx, hr.conn, ups)
	if errors.Is(err, remote.ErrChecksumMismatch) && slices.ContainsFunc(batch, func(c Change) bool { return c.File.Kind == KindBinary }) {
		err = fmt.Errorf("%w (if the vz-node binary was rebuilt during the apply, run apply again)", err)
	}
	return n, err
}

// uploadBatches splits the changes where a file is signed on the host: the
// files before it (the entitlements it is signed with) must be in place
// first.
func uploadBatches(changes []Change) [][]Change {
	var out [][]Change
	var cur []Change
	for _, c := range changes {
		if c.File.Sign && len(cur) > 0 {
			out = append(out, cur)
			cur = nil
		}
		cur = append(cur, c)
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}

func uniq(s []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, v := range s {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}

// virtualizationEntitlement is the entitlement Virtualization.framework
// requires of vz-node.
const virtualizationEntitlement = "com.apple.security.virtualization"

// signer codesigns the temp binary ad hoc with the entitlements unless it
// already carries the virtualization entitlement. A binary whose bytes do
// not hold the entitlement's name (maybeSigned says) cannot carry it, so
// the host is not asked.
func signer(entitlements string, maybeSigned func() (bool, error)) func(ctx context.Context, h remote.Host, tmp string) error {
	return func(ctx context.Context, h remote.Host, tmp string) error {
		maybe, err := maybeSigned()
		if err != nil {
			return err
		}
		if maybe {
			res, err := h.Run(ctx, remote.Cmd{Args: []string{"codesign", "-d", "--entitlements", "-", "--xml", tmp}, Sudo: true})
			if err == nil && bytes.Contains(append(res.Stdout, res.Stderr...), []byte(virtualizationEntitlement)) {
				return nil
			}
		}
		if _, err := h.Run(ctx, remote.Cmd{Args: []string{"codesign", "--force", "--sign", "-", "--entitlements", entitlements, tmp}, Sudo: true}); err != nil {
			return fmt.Errorf("codesign with %s: %w", entitlements, err)
		}
		return nil
	}
}

type servicePhase struct{}

func (servicePhase) name() string { return "service" }
func (servicePhase) run(ctx context.Context, hr *hostRun) error {
	p := hr.res.Plan
	if p.Service == ServiceNone {
		return nil
	}
	version, err := hr.binaryVersion(ctx)
	if err != nil {
		return err
	}
	hr.wantVersion = version
	return hr.restart(ctx, p.Service, version, "restarting vz-node")
}

// restart takes a slot of the rollout budget, performs the launchd action
// and waits until the node is Ready on version.
func (hr *hostRun) restart(ctx context.Context, a ServiceAction, version, what string) error {
	select {
	case hr.r.budget <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-hr.r.budget }()
	since := readyHeartbeat(ctx, hr.kube, hr.h.Node.Name)
	hr.r.progress(hr.h.Name, "%s: launchctl %s", what, a)
	l := launchd{host: hr.conn, label: hr.h.Paths.LaunchdLabel, plist: hr.h.Paths.Plist, pause: hr.r.opts.LaunchdPause}
	if err := l.apply(ctx, a); err != nil {
		return err
	}
	hr.r.progress(hr.h.Name, "waiting up to %s for node %s to be Ready on %s", hr.r.timeout, hr.h.Node.Name, orUnknown(version))
	if err := waitReady(ctx, hr.kube, hr.h.Node.Name, version, since, hr.r.timeout); err != nil {
		st, serr := l.state(ctx)
		if serr == nil {
			err = fmt.Errorf("%w (launchd job %s)", err, st)
		}
		return err
	}
	hr.res.Version = version
	return nil
}

// binaryVersion is the version of the binary now installed.
func (hr *hostRun) binaryVersion(ctx context.Context) (string, error) {
	if !hr.res.Plan.Changed(KindBinary) && hr.res.Facts.InstalledVersion != "" {
		return hr.res.Facts.InstalledVersion, nil
	}
	if hr.newVersion != "" {
		return hr.newVersion, nil
	}
	// The version is the binary's: one host asks, the others (and later
	// runs, through the local sum cache) reuse the answer.
	sum, _, err := hr.r.binaryInfo()
	if err != nil {
		return "", err
	}
	err = hr.r.shared("version "+sum, func(known string) (string, error) {
		if known == "" {
			v, err := binaryVersion(ctx, hr.conn, hr.h.Paths.Binary)
			if err != nil {
				return "", err
			}
			known = v
			recordVersion(hr.r.opts.SumCacheFile, hr.r.opts.Binary, sum, v)
		}
		hr.newVersion = known
		return known, nil
	})
	return hr.newVersion, err
}

type nodePhase struct{}

func (nodePhase) ownBound() {} // the ready timeout

func (nodePhase) name() string { return "node" }
func (nodePhase) run(ctx context.Context, hr *hostRun) error {
	if len(hr.res.Plan.Node) == 0 && hr.res.Plan.Service == ServiceNone {
		return nil
	}
	changes, err := applyNodeMeta(ctx, hr.kube, hr.h.Node.Name, hr.h.Node.Labels, hr.h.Node.Taints)
	if err != nil {
		return err
	}
	if len(changes) > 0 {
		hr.r.progress(hr.h.Name, "node %s: %s", hr.h.Node.Name, strings.Join(changes, ", "))
	}
	return nil
}

// rollback restores the files this apply replaced from their .prev copies,
// removes the ones it created, restarts vz-node and waits until the node is
// Ready again on the version it ran before.
func (hr *hostRun) rollback(ctx context.Context, cause error) {
	ctx = context.WithoutCancel(ctx)
	// A host that hung in a phase may hang restoring its files too; the
	// restart after has a bound of its own.
	fctx, cancel := hr.r.bounded(ctx)
	defer cancel()
	h := hr.h
	var restored []string
	var script strings.Builder
	script.WriteString("set -e\n")
	created := false
	for _, c := range hr.installed {
		if c.Kind == Create {
			created = true
			fmt.Fprintf(&script, "rm -f %s\n", remote.Quote(c.File.Path))
			continue
		}
		fmt.Fprintf(&script, "if [ -f %[1]s ]; then mv -f %[1]s %[2]s; fi\n", remote.Quote(c.File.Path+".prev"), remote.Quote(c.File.Path))
		restored = append(restored, string(c.File.Kind))
	}
	if hr.stateUploaded {
		sp := statePath(h.Paths.ConfigDir)
		fmt.Fprintf(&script, "if [ -f %[1]s ]; then mv -f %[1]s %[2]s; else rm -f %[2]s; fi\n", remote.Quote(sp+".prev"), remote.Quote(sp))
	}
	if created && hr.res.Facts.InstalledVersion == "" {
		// A first install has nothing to go back to: stop the job and
		// leave the host as it was before.
		l := launchd{host: hr.conn, label: h.Paths.LaunchdLabel, plist: h.Paths.Plist, pause: hr.r.opts.LaunchdPause}
		_, _ = l.run(fctx, "bootout", l.target())
		_, _ = hr.conn.Run(fctx, remote.Cmd{Args: []string{"sh", "-c", script.String()}, Sudo: true})
		hr.res.Err = fmt.Errorf("%w; first install, nothing to roll back to: the job was stopped and the new files removed", cause)
		return
	}
	hr.r.progress(h.Name, "rolling back (%s): restoring %s", cause, strings.Join(restored, ", "))
	if _, err := hr.conn.Run(fctx, remote.Cmd{Args: []string{"sh", "-c", script.String()}, Sudo: true}); err != nil {
		hr.res.Err = fmt.Errorf("%w; rollback failed restoring the previous files: %v", cause, err)
		return
	}
	action := ServiceKickstart
	if slices.ContainsFunc(hr.installed, func(c Change) bool { return c.File.Kind == KindPlist }) {
		action = ServiceReload
	}
	rctx, rcancel := context.WithTimeout(ctx, hr.r.timeout+time.Minute)
	defer rcancel()
	if err := hr.restart(rctx, action, hr.res.Facts.InstalledVersion, "rollback"); err != nil {
		hr.res.Err = fmt.Errorf("%w; rollback did not bring the node back: %v", cause, err)
		return
	}
	hr.res.Status = StatusRolledBack
	hr.res.Version = hr.res.Facts.InstalledVersion
	hr.res.Err = fmt.Errorf("%w; rolled back to the previous files, node Ready on %s", cause, orUnknown(hr.res.Facts.InstalledVersion))
}

// managedPathList is every path the facts hash, known before the files are
// rendered.
func managedPathList(h inventory.Host) []string {
	p := h.Paths
	return []string{
		p.Entitlements(), path.Join(p.ConfigDir, configFileName), path.Join(p.ConfigDir, caFileName),
		p.Kubeconfig(), p.ServingCert(), p.ServingKey(), p.GuestSSHKey(), p.GuestSSHPassword(), p.Binary, p.Plist,
	}
}

// readFilesScript prints "present" and the indexes of the files that
// exist, then their bytes one after another (one cat, whatever the number
// of files). Their sizes come from the facts' stat of the same files, so
// no other program runs.
const readFilesScript = `n=$# i=0 present=
for f do if [ -f "$f" ]; then set -- "$@" "$f"; present="$present $i"; fi; i=$((i+1)); done
shift $n; echo "present$present"; [ $# -eq 0 ] || exec cat "$@"`

// parseReadFiles splits readFilesScript's output into the files' bytes;
// stats are the files' "size mtime inode" from the same run. A file that
// changed size between the stat and the cat fails the read: nothing is
// taken from a file caught mid-write.
func parseReadFiles(files []string, stdout []byte, stats map[string]string) (map[string][]byte, error) {
	out := map[string][]byte{}
	if len(files) == 0 {
		return out, nil
	}
	first, rest, _ := bytes.Cut(stdout, []byte("\n"))
	idx, ok := strings.CutPrefix(string(first), "present")
	if !ok {
		return nil, errors.New("reading installed files: unexpected output")
	}
	for _, field := range strings.Fields(idx) {
		i, err := strconv.Atoi(field)
		if err != nil || i < 0 || i >= len(files) {
			return nil, errors.New("reading installed files: unexpected output")
		}
		f := files[i]
		size, _, _ := strings.Cut(stats[f], " ")
		n, err := strconv.Atoi(size)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("reading installed files: stat printed no size for %s", f)
		}
		if n > len(rest) {
			return nil, fmt.Errorf("reading installed files: %s is shorter than stat said (it changed while being read; run again)", f)
		}
		out[f], rest = rest[:n], rest[n:]
	}
	if len(rest) > 0 {
		return nil, errors.New("reading installed files: they are longer than stat said (one changed while being read; run again)")
	}
	return out, nil
}
