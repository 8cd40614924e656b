package node

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"
)

// The node controller's Secret and ConfigMap informers sync (client-go
// lists by watching, and waits for the bookmark that ends the initial
// events) without asking the API server, while Gets, and other resources'
// lists, still reach it.
func TestControllerClientKeepsSecretAndConfigMapInformersLocal(t *testing.T) {
	real := fake.NewClientset(
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ci", Name: "token"}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ci", Name: "cache"}},
	)
	factory := informers.NewSharedInformerFactory(controllerClient{real}, time.Minute)
	secrets := factory.Core().V1().Secrets().Informer()
	configMaps := factory.Core().V1().ConfigMaps().Informer()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	factory.Start(ctx.Done())
	defer func() {
		cancel()
		factory.Shutdown()
	}()
	for name, synced := range map[string]cache.InformerSynced{"Secret": secrets.HasSynced, "ConfigMap": configMaps.HasSynced} {
		if !cache.WaitForCacheSync(ctx.Done(), synced) {
			t.Fatalf("the %s informer did not sync", name)
		}
	}
	if n := len(secrets.GetStore().List()); n != 0 {
		t.Fatalf("the Secret informer holds %d objects, want none", n)
	}
	c := controllerClient{real}.CoreV1()
	if svcs, err := c.Services("ci").List(ctx, metav1.ListOptions{}); err != nil || len(svcs.Items) != 1 {
		t.Fatalf("a Service List through the controller's client: %v, %v", svcs, err)
	}
	if _, err := c.Secrets("ci").Get(ctx, "token", metav1.GetOptions{}); err != nil {
		t.Fatalf("a Secret Get through the controller's client: %v", err)
	}
	for _, a := range real.Actions() {
		if r := a.GetResource().Resource; (r == "secrets" || r == "configmaps") && a.GetVerb() != "get" {
			t.Errorf("the API server was asked to %s %s", a.GetVerb(), r)
		}
	}
}
