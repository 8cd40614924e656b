// Package podenv resolves the environment of a pod's containers as the
// kubelet does: envFrom, then env (which wins), $(VAR) references, ConfigMap
// and Secret keys, the downward API, and the Services' variables
// (KUBERNETES_SERVICE_HOST and, with enableServiceLinks, those of the pod's
// namespace). It reads each referenced object with a GET: the Node
// authorizer lets a node get the objects its pods reference, but never list
// or watch them, so informer caches stay empty under a node's own
// credentials. Services, which a node may list, are listed per namespace.
package podenv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Getter reads the objects a pod references.
type Getter interface {
	Secret(ctx context.Context, ns, name string) (*corev1.Secret, error)
	ConfigMap(ctx context.Context, ns, name string) (*corev1.ConfigMap, error)
}

// ServiceLister lists the Services of a namespace.
type ServiceLister interface {
	Services(ctx context.Context, ns string) ([]corev1.Service, error)
}

// Objects is what Resolve reads.
type Objects interface {
	Getter
	ServiceLister
}

// Report receives a warning about the pod (an Event): reason and message.
type Report func(reason, message string)

// Event reasons, as virtual-kubelet and the kubelet name them.
const (
	ReasonOptionalConfigMapNotFound      = "OptionalConfigMapNotFound"
	ReasonOptionalConfigMapKeyNotFound   = "OptionalConfigMapKeyNotFound"
	ReasonFailedToReadOptionalConfigMap  = "FailedToReadOptionalConfigMap"
	ReasonOptionalSecretNotFound         = "OptionalSecretNotFound"
	ReasonOptionalSecretKeyNotFound      = "OptionalSecretKeyNotFound"
	ReasonFailedToReadOptionalSecret     = "FailedToReadOptionalSecret"
	ReasonMandatoryConfigMapNotFound     = "MandatoryConfigMapNotFound"
	ReasonMandatoryConfigMapKeyNotFound  = "MandatoryConfigMapKeyNotFound"
	ReasonFailedToReadMandatoryConfigMap = "FailedToReadMandatoryConfigMap"
	ReasonMandatorySecretNotFound        = "MandatorySecretNotFound"
	ReasonMandatorySecretKeyNotFound     = "MandatorySecretKeyNotFound"
	ReasonFailedToReadMandatorySecret    = "FailedToReadMandatorySecret"
)

// MissingError is a mandatory reference that could not be resolved: the pod
// cannot start until the object or key exists (or can be read).
type MissingError struct {
	Reason  string
	Message string
}

func (e *MissingError) Error() string { return e.Message }

// Fields are the downward-API fields env can read, beside
// metadata.labels['KEY'] and metadata.annotations['KEY'].
var Fields = []string{"metadata.name", "metadata.namespace", "metadata.uid", "spec.nodeName", "spec.serviceAccountName", "status.hostIP", "status.hostIPs"}

// Resolve replaces each container's and init container's env and envFrom
// with the variables they define, as plain values, followed by the
// Services' variables that the container does not define itself (sorted by
// name). A reference it cannot
// resolve by design (a resourceFieldRef, an unsupported field) stays as
// written, for the caller to refuse where it matters. A mandatory object or
// key that is missing or unreadable is a *MissingError (reported too);
// optional ones are skipped with a report. Services that cannot be listed
// are an error: the kubelet, too, starts no container without their
// variables. get nil (no API client) resolves what needs no object.
func Resolve(ctx context.Context, pod *corev1.Pod, get Objects, hostIP string, report Report) error {
	r := &resolver{ctx: ctx, pod: pod, get: get, hostIP: hostIP, report: report, objects: map[string]object{}}
	var err error
	if r.services, err = r.serviceVars(); err != nil {
		return err
	}
	for _, cs := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for i := range cs {
			if err := r.container(&cs[i]); err != nil {
				return err
			}
		}
	}
	return nil
}

type object struct {
	data map[string]string
	err  error
}

type resolver struct {
	ctx     context.Context
	pod     *corev1.Pod
	get     Objects
	hostIP  string
	report  Report
	objects map[string]object
	// services are the Services' variables every container gets.
	services map[string]string
}

// env is a container's variables in definition order.
type env struct {
	order []string
	vars  map[string]corev1.EnvVar
}

func (e *env) set(v corev1.EnvVar) {
	if _, ok := e.vars[v.Name]; !ok {
		e.order = append(e.order, v.Name)
	}
	e.vars[v.Name] = v
}

func (r *resolver) container(c *corev1.Container) error {
	e := &env{vars: map[string]corev1.EnvVar{}}
	for _, from := range c.EnvFrom {
		if err := r.envFrom(c.Name, from, e); err != nil {
			return err
		}
	}
	for _, v := range c.Env {
		resolved, keep, err := r.value(c.Name, v, e)
		if err != nil {
			return err
		}
		if keep {
			e.set(resolved)
		}
	}
	c.EnvFrom = nil
	c.Env = nil
	for _, name := range e.order {
		c.Env = append(c.Env, e.vars[name])
	}
	names := make([]string, 0, len(r.services))
	for name := range r.services {
		if _, ok := e.vars[name]; !ok {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	for _, name := range names {
		c.Env = append(c.Env, corev1.EnvVar{Name: name, Value: r.services[name]})
	}
	return nil
}

func (r *resolver) envFrom(container string, from corev1.EnvFromSource, e *env) error {
	kind, name, optional := "ConfigMap", "", false
	switch {
	case from.ConfigMapRef != nil:
		name, optional = from.ConfigMapRef.Name, ptrTrue(from.ConfigMapRef.Optional)
	case from.SecretRef != nil:
		kind, name, optional = "Secret", from.SecretRef.Name, ptrTrue(from.SecretRef.Optional)
	default:
		return nil
	}
	data, err := r.object(kind, name)
	if err != nil {
		return r.unresolved(kind, name, "", optional, fmt.Sprintf("envFrom of container %q", container), err)
	}
	keys := make([]string, 0, len(data))
	for k := range data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		e.set(corev1.EnvVar{Name: from.Prefix + k, Value: data[k]})
	}
	return nil
}

// value resolves one env entry; keep is false for a skipped optional one.
func (r *resolver) value(container string, v corev1.EnvVar, e *env) (corev1.EnvVar, bool, error) {
	f := v.ValueFrom
	switch {
	case f == nil:
		return corev1.EnvVar{Name: v.Name, Value: expand(v.Value, r.lookup(e))}, true, nil
	case f.FieldRef != nil:
		if s, ok := Field(r.pod, f.FieldRef.FieldPath, r.hostIP); ok {
			return corev1.EnvVar{Name: v.Name, Value: s}, true, nil
		}
		return v, true, nil
	case f.ConfigMapKeyRef != nil:
		return r.key(container, v, "ConfigMap", f.ConfigMapKeyRef.Name, f.ConfigMapKeyRef.Key, ptrTrue(f.ConfigMapKeyRef.Optional))
	case f.SecretKeyRef != nil:
		return r.key(container, v, "Secret", f.SecretKeyRef.Name, f.SecretKeyRef.Key, ptrTrue(f.SecretKeyRef.Optional))
	}
	return v, true, nil
}

func (r *resolver) key(container string, v corev1.EnvVar, kind, name, key string, optional bool) (corev1.EnvVar, bool, error) {
	what := fmt.Sprintf("env %s of container %q", v.Name, container)
	data, err := r.object(kind, name)
	if err != nil {
		return v, false, r.unresolved(kind, name, "", optional, what, err)
	}
	s, ok := data[key]
	if !ok {
		return v, false, r.unresolved(kind, name, key, optional, what, nil)
	}
	return corev1.EnvVar{Name: v.Name, Value: s}, true, nil
}

// unresolved reports a reference that could not be resolved and returns a
// *MissingError unless it is optional. err nil means key is missing.
func (r *resolver) unresolved(kind, name, key string, optional bool, what string, err error) error {
	mode := "Mandatory"
	if optional {
		mode = "Optional"
	}
	var reason, msg string
	switch {
	case err == nil:
		reason = mode + kind + "KeyNotFound"
		msg = fmt.Sprintf("%s: %s %q has no key %q", what, kind, name, key)
	case apierrors.IsNotFound(err):
		reason = mode + kind + "NotFound"
		msg = fmt.Sprintf("%s: %s %q not found", what, kind, name)
	default:
		reason = "FailedToRead" + mode + kind
		msg = fmt.Sprintf("%s: failed to read %s %q: %v", what, kind, name, err)
	}
	if optional {
		msg = "skipping optional " + msg
	}
	if r.report != nil {
		r.report(reason, msg)
	}
	if optional {
		return nil
	}
	return &MissingError{Reason: reason, Message: msg}
}

// object reads a Secret's or ConfigMap's data once per Resolve.
func (r *resolver) object(kind, name string) (map[string]string, error) {
	k := kind + "/" + name
	if o, ok := r.objects[k]; ok {
		return o.data, o.err
	}
	var o object
	switch {
	case r.get == nil:
		o.err = errors.New("this node has no API client to read it")
	case kind == "Secret":
		s, err := r.get.Secret(r.ctx, r.pod.Namespace, name)
		if o.err = err; err == nil {
			o.data = make(map[string]string, len(s.Data)+len(s.StringData))
			for k, v := range s.Data {
				o.data[k] = string(v)
			}
		}
	default:
		cm, err := r.get.ConfigMap(r.ctx, r.pod.Namespace, name)
		if o.err = err; err == nil {
			o.data = make(map[string]string, len(cm.Data)+len(cm.BinaryData))
			for k, v := range cm.BinaryData {
				o.data[k] = string(v)
			}
			for k, v := range cm.Data {
				o.data[k] = v
			}
		}
	}
	r.objects[k] = o
	return o.data, o.err
}

// Field reads a downward-API field of pod, one of Fields or
// metadata.labels['KEY'] or metadata.annotations['KEY']; hostIP is the
// node's address.
func Field(pod *corev1.Pod, path, hostIP string) (string, bool) {
	switch path {
	case "metadata.name":
		return pod.Name, true
	case "metadata.namespace":
		return pod.Namespace, true
	case "metadata.uid":
		return string(pod.UID), true
	case "spec.nodeName":
		return pod.Spec.NodeName, true
	case "spec.serviceAccountName":
		return pod.Spec.ServiceAccountName, true
	case "status.hostIP", "status.hostIPs":
		// The node has one address: hostIPs, a comma-separated list for
		// the kubelet, holds just it.
		return hostIP, true
	}
	for prefix, m := range map[string]map[string]string{"metadata.labels": pod.Labels, "metadata.annotations": pod.Annotations} {
		if rest, ok := strings.CutPrefix(path, prefix+"['"); ok && strings.HasSuffix(rest, "']") {
			return m[strings.TrimSuffix(rest, "']")], true
		}
	}
	return "", false
}

// lookup finds a variable for $(NAME): one defined before in e, else a
// Service's.
func (r *resolver) lookup(e *env) func(string) (string, bool) {
	return func(name string) (string, bool) {
		if v, ok := e.vars[name]; ok {
			return v.Value, v.ValueFrom == nil
		}
		s, ok := r.services[name]
		return s, ok
	}
}

// Expand expands $(NAME) references in s with the plain values of env (a
// resolved container's), as the kubelet expands a volume mount's
// subPathExpr.
func Expand(s string, env []corev1.EnvVar) string {
	return expand(s, func(name string) (string, bool) {
		for i := len(env) - 1; i >= 0; i-- {
			if env[i].Name == name && env[i].ValueFrom == nil {
				return env[i].Value, true
			}
		}
		return "", false
	})
}

// expand replaces $(NAME) with the value lookup finds and $$ with $; other
// references stay as written, as the kubelet leaves them.
func expand(s string, lookup func(string) (string, bool)) string {
	if !strings.Contains(s, "$") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
			continue
		case '(':
			if end := strings.IndexByte(s[i+2:], ')'); end >= 0 {
				if v, ok := lookup(s[i+2 : i+2+end]); ok {
					b.WriteString(v)
					i += 2 + end
					continue
				}
			}
		}
		b.WriteByte('$')
	}
	return b.String()
}

// serviceVars lists the Services whose variables the pod's containers get,
// as the kubelet chooses them: the API server's own ("kubernetes" in the
// default namespace) always, and with enableServiceLinks (the default)
// every Service of the pod's namespace, which wins over the default
// namespace's of the same name. Services without a cluster IP (headless,
// ExternalName) define none.
func (r *resolver) serviceVars() (map[string]string, error) {
	if r.get == nil {
		return nil, nil
	}
	links := r.pod.Spec.EnableServiceLinks == nil || *r.pod.Spec.EnableServiceLinks
	chosen := map[string]*corev1.Service{}
	add := func(ns string, keep func(*corev1.Service) bool) error {
		svcs, err := r.get.Services(r.ctx, ns)
		if err != nil {
			return fmt.Errorf("listing the Services of namespace %s, whose addresses every container gets as variables: %w", ns, err)
		}
		for i := range svcs {
			if keep(&svcs[i]) {
				chosen[svcs[i].Name] = &svcs[i]
			}
		}
		return nil
	}
	if !links || r.pod.Namespace != metav1.NamespaceDefault {
		if err := add(metav1.NamespaceDefault, func(s *corev1.Service) bool { return s.Name == "kubernetes" }); err != nil {
			return nil, err
		}
	}
	if links {
		if err := add(r.pod.Namespace, func(*corev1.Service) bool { return true }); err != nil {
			return nil, err
		}
	}
	vars := map[string]string{}
	for _, s := range chosen {
		serviceEnv(s, vars)
	}
	return vars, nil
}

// serviceEnv adds a Service's variables to vars: NAME_SERVICE_HOST,
// NAME_SERVICE_PORT (the first port) and NAME_SERVICE_PORT_PORTNAME for each
// named port, and Docker's link variables (NAME_PORT, NAME_PORT_80_TCP,
// ..._PROTO, ..._PORT, ..._ADDR).
func serviceEnv(s *corev1.Service, vars map[string]string) {
	ip := s.Spec.ClusterIP
	if ip == "" || ip == corev1.ClusterIPNone || len(s.Spec.Ports) == 0 {
		return
	}
	name := envName(s.Name)
	vars[name+"_SERVICE_HOST"] = ip
	vars[name+"_SERVICE_PORT"] = strconv.Itoa(int(s.Spec.Ports[0].Port))
	for i, p := range s.Spec.Ports {
		port := strconv.Itoa(int(p.Port))
		if p.Name != "" {
			vars[name+"_SERVICE_PORT_"+envName(p.Name)] = port
		}
		proto := strings.ToLower(string(p.Protocol))
		if proto == "" {
			proto = "tcp"
		}
		url := proto + "://" + net.JoinHostPort(ip, port)
		if i == 0 {
			vars[name+"_PORT"] = url
		}
		prefix := name + "_PORT_" + port + "_" + strings.ToUpper(proto)
		vars[prefix] = url
		vars[prefix+"_PROTO"] = proto
		vars[prefix+"_PORT"] = port
		vars[prefix+"_ADDR"] = ip
	}
}

// envName is a Service or port name as a variable name: upper case, with
// "-" as "_".
func envName(s string) string { return strings.ToUpper(strings.ReplaceAll(s, "-", "_")) }

func ptrTrue(b *bool) bool { return b != nil && *b }
