package fleet

import (
	"fmt"
	"net/http"
	"sync/atomic"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

func defaultKube(kubeconfig string) (kubernetes.Interface, error) {
	rc, err := OperatorConfig(kubeconfig)
	if err != nil {
		return nil, err
	}
	return kubernetes.NewForConfig(rc)
}

// OperatorConfig is the client config of the operator kubeconfig (client-go's
// default rules when it is ""), for a run whose hosts all ask the API
// server at once.
func OperatorConfig(kubeconfig string) (*rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = kubeconfig
	rc, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, nil).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("operator kubeconfig: %w", err)
	}
	rc.QPS, rc.Burst = 50, 100
	rc.Wrap(shareFirstConnection)
	return rc, nil
}

// shareFirstConnection holds the requests that start while a client's
// first request is under way until that one has its answer, so they share
// the HTTP/2 connection it opened. Left alone, net/http dials for every
// request that finds no connection: the hosts of a run, starting at once,
// would each open a connection to the API server and make it do a TLS
// handshake (30 for 30 hosts), only to close all but one of them.
func shareFirstConnection(next http.RoundTripper) http.RoundTripper {
	return &firstAlone{next: next, answered: make(chan struct{})}
}

type firstAlone struct {
	next     http.RoundTripper
	started  atomic.Bool
	answered chan struct{} // closed when the first request has its answer
}

func (f *firstAlone) RoundTrip(req *http.Request) (*http.Response, error) {
	if f.started.CompareAndSwap(false, true) {
		defer close(f.answered)
		return f.next.RoundTrip(req)
	}
	select {
	case <-f.answered:
	case <-req.Context().Done():
		return nil, req.Context().Err()
	}
	return f.next.RoundTrip(req)
}
