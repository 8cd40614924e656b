package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vzfleet/vzfleet/test/harness"
)

// With --authentication-token-webhook, bearer tokens are checked by
// TokenReview and requests authorized by SubjectAccessReview: a bad token
// gets 401, a valid one without rights 403, and 200 once RBAC allows it.
func TestVZNodeWebhookAuth(t *testing.T) {
	harness.RequireRoot(t)
	cp := harness.ControlPlaneT(t, harness.ControlPlaneOptions{})
	ctx := context.Background()
	const name = "mac-e2e-auth"
	// Delegated authentication needs the node allowed to create
	// TokenReviews and SubjectAccessReviews.
	bind := func(binding, role string, subject rbacv1.Subject) {
		t.Helper()
		_, err := cp.Client.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: binding},
			RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: role},
			Subjects:   []rbacv1.Subject{subject},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
	}
	bind("vz-node-auth-delegator", "system:auth-delegator", rbacv1.Subject{Kind: "User", Name: "system:node:" + name, APIGroup: "rbac.authorization.k8s.io"})
	n := startVZNode(t, cp, name, "--authentication-token-webhook",
		"--authentication-token-webhook-cache-ttl", "1s",
		"--authorization-webhook-cache-authorized-ttl", "1s",
		"--authorization-webhook-cache-unauthorized-ttl", "1s")

	if _, err := cp.Client.CoreV1().ServiceAccounts("default").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "viewer"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	tr, err := cp.Client.CoreV1().ServiceAccounts("default").CreateToken(ctx, "viewer", &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	get := func(token string) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("https://127.0.0.1:%d/pods", n.Port), nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		c := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
		resp, err := c.Do(req)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	eventually(t, 60*time.Second, "the kubelet API to answer", func() error {
		if code := get("not-a-token"); code != http.StatusUnauthorized {
			return fmt.Errorf("bad token: %d, want 401", code)
		}
		return nil
	})
	if code := get(""); code != http.StatusUnauthorized {
		t.Errorf("no token: %d, want 401", code)
	}
	if code := get(tr.Status.Token); code != http.StatusForbidden {
		t.Errorf("token without RBAC: %d, want 403", code)
	}
	bind("viewer-kubelet-api", "system:kubelet-api-admin", rbacv1.Subject{Kind: "ServiceAccount", Name: "viewer", Namespace: "default"})
	eventually(t, 30*time.Second, "the token to be allowed", func() error {
		if code := get(tr.Status.Token); code != http.StatusOK {
			return fmt.Errorf("token with system:kubelet-api-admin: %d, want 200", code)
		}
		return nil
	})
}
