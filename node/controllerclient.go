package node

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
)

// controllerClient is the client virtual-kubelet's node controller gets.
// nodeutil starts Secret and ConfigMap informers over the whole cluster for
// its env resolver, which vz-node turns off (package podenv GETs each object
// a pod references instead). A node may not list or watch those at the
// cluster scope, so the informers would be refused every few seconds: noise
// in vz-node's log and the API server's audit log, and load on the API
// server from every node. Here their list is empty and their watch idle;
// everything else, Gets of Secrets and ConfigMaps included, goes to the API
// server.
type controllerClient struct{ kubernetes.Interface }

func (c controllerClient) CoreV1() corev1client.CoreV1Interface {
	return controllerCoreV1{c.Interface.CoreV1()}
}

type controllerCoreV1 struct{ corev1client.CoreV1Interface }

func (c controllerCoreV1) Secrets(ns string) corev1client.SecretInterface {
	return unlistedSecrets{c.CoreV1Interface.Secrets(ns)}
}

func (c controllerCoreV1) ConfigMaps(ns string) corev1client.ConfigMapInterface {
	return unlistedConfigMaps{c.CoreV1Interface.ConfigMaps(ns)}
}

type unlistedSecrets struct{ corev1client.SecretInterface }

func (unlistedSecrets) List(context.Context, metav1.ListOptions) (*corev1.SecretList, error) {
	return &corev1.SecretList{ListMeta: metav1.ListMeta{ResourceVersion: "1"}}, nil
}

func (unlistedSecrets) Watch(_ context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	return idleWatch(opts, &corev1.Secret{ObjectMeta: initialEventsEnd}), nil
}

type unlistedConfigMaps struct {
	corev1client.ConfigMapInterface
}

func (unlistedConfigMaps) List(context.Context, metav1.ListOptions) (*corev1.ConfigMapList, error) {
	return &corev1.ConfigMapList{ListMeta: metav1.ListMeta{ResourceVersion: "1"}}, nil
}

func (unlistedConfigMaps) Watch(_ context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	return idleWatch(opts, &corev1.ConfigMap{ObjectMeta: initialEventsEnd}), nil
}

// initialEventsEnd marks the bookmark that ends a watch-list's initial
// events (client-go's informers list by watching).
var initialEventsEnd = metav1.ObjectMeta{ResourceVersion: "1", Annotations: map[string]string{metav1.InitialEventsAnnotationKey: "true"}}

// idleWatch is a watch on which nothing happens. Asked for the initial
// events, it sends none but the bookmark that ends them.
func idleWatch(opts metav1.ListOptions, bookmark runtime.Object) watch.Interface {
	w := watch.NewFakeWithChanSize(1, false)
	if opts.SendInitialEvents != nil && *opts.SendInitialEvents {
		w.Action(watch.Bookmark, bookmark)
	}
	return w
}
