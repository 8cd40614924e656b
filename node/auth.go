package node

import (
	"context"
	"fmt"

	"github.com/virtual-kubelet/virtual-kubelet/node/nodeutil"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/authenticatorfactory"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	"k8s.io/apiserver/pkg/authorization/authorizerfactory"
	"k8s.io/apiserver/pkg/server/dynamiccertificates"
	"k8s.io/apiserver/pkg/server/options"
	"k8s.io/client-go/kubernetes"
)

// kubeletAuth builds the kubelet API's authentication and authorization:
//   - client certificates signed by the client CA authenticate as their CN
//     (the CA file is watched and reloaded);
//   - with the token webhook, bearer tokens are checked by TokenReview and
//     every request is authorized by SubjectAccessReview against the node's
//     proxy/log/stats/metrics subresources, as the kubelet does;
//   - without the webhook, any authenticated client is allowed.
//
// Anonymous requests are refused (401); denied ones get 403.
func kubeletAuth(ctx context.Context, cfg Config, client kubernetes.Interface) (nodeutil.Auth, error) {
	if cfg.NoVerifyClients {
		return nodeutil.NoAuth(), nil
	}
	authn := authenticatorfactory.DelegatingAuthenticatorConfig{
		CacheTTL:            cfg.AuthWebhookCacheTTL.D(),
		WebhookRetryBackoff: options.DefaultAuthWebhookRetryBackoff(),
	}
	if cfg.ClientCAPath != "" {
		ca, err := dynamiccertificates.NewDynamicCAContentFromFile("client-ca", cfg.ClientCAPath)
		if err != nil {
			return nil, fmt.Errorf("--client-verify-ca %s: %w", cfg.ClientCAPath, err)
		}
		go ca.Run(ctx, 1)
		authn.ClientCertificateCAContentProvider = ca
	}
	if cfg.AuthWebhook {
		authn.TokenAccessReviewClient = client.AuthenticationV1()
	}
	req, _, err := authn.New()
	if err != nil {
		return nil, fmt.Errorf("kubelet API authentication: %w (set --client-verify-ca, --authentication-token-webhook or --no-verify-clients)", err)
	}
	var authz authorizer.Authorizer = authorizerfactory.NewAlwaysAllowAuthorizer()
	if cfg.AuthWebhook {
		authz, err = authorizerfactory.DelegatingAuthorizerConfig{
			SubjectAccessReviewClient: client.AuthorizationV1(),
			AllowCacheTTL:             cfg.AuthzWebhookAuthorizedTTL.D(),
			DenyCacheTTL:              cfg.AuthzWebhookUnauthorizedTTL.D(),
			WebhookRetryBackoff:       options.DefaultAuthWebhookRetryBackoff(),
		}.New()
		if err != nil {
			return nil, fmt.Errorf("kubelet API authorization: %w", err)
		}
	}
	return nodeutil.InstrumentAuth(&authPair{Request: req, RequestAttributesGetter: nodeutil.NodeRequestAttr{NodeName: cfg.NodeName}, Authorizer: authz}), nil
}

type authPair struct {
	authenticator.Request
	authorizer.RequestAttributesGetter
	authorizer.Authorizer
}
