package fleet

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/vzfleet/vzfleet/test/harness"
)

// TestOperatorClientSharesOneConnection: 30 hosts asking a real API
// server at once open one connection between them, not 30.
func TestOperatorClientSharesOneConnection(t *testing.T) {
	harness.RequireRoot(t)
	cp := harness.ControlPlaneT(t, harness.ControlPlaneOptions{})
	rc, err := OperatorConfig(cp.AdminKubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	var dials atomic.Int32
	rc.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		dials.Add(1)
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 30 {
		wg.Go(func() {
			if _, err := getNode(t.Context(), client, fmt.Sprintf("mac-%d", i)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := dials.Load(); n != 1 {
		t.Fatalf("30 concurrent requests dialled the API server %d times, want 1", n)
	}
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestShareFirstConnectionHoldsRequestsUntilTheFirstAnswer(t *testing.T) {
	release := make(chan struct{})
	var calls atomic.Int32
	rt := shareFirstConnection(roundTripperFunc(func(r *http.Request) (*http.Response, error) {
		if calls.Add(1) == 1 {
			<-release
		}
		return &http.Response{StatusCode: http.StatusOK, Request: r}, nil
	}))
	get := func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://apiserver/api", nil)
		if err != nil {
			return err
		}
		_, err = rt.RoundTrip(req)
		return err
	}
	first := make(chan error, 1)
	go func() { first <- get(t.Context()) }()
	for calls.Load() == 0 {
		runtime.Gosched()
	}
	// A request whose context ends while it waits gives up.
	ctx, cancel := context.WithCancel(t.Context())
	waiting := make(chan error, 1)
	go func() { waiting <- get(ctx) }()
	cancel()
	if err := <-waiting; !errors.Is(err, context.Canceled) {
		t.Fatalf("a cancelled waiting request: %v", err)
	}
	later := make(chan error, 1)
	go func() { later <- get(t.Context()) }()
	select {
	case err := <-later:
		t.Fatalf("a request went ahead before the first had its answer: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	if err := errors.Join(<-first, <-later); err != nil {
		t.Fatal(err)
	}
	if n := calls.Load(); n != 2 {
		t.Fatalf("%d requests sent, want 2 (the cancelled one never was)", n)
	}
}
