package node

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// serveGRPC serves a gRPC server on loopback until the test ends and
// returns its address.
func serveGRPC(t *testing.T, s *grpc.Server) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Serve(l) }()
	t.Cleanup(s.Stop)
	return l.Addr().String()
}

// A gRPC probe passes only on SERVING from the standard health service,
// and says why otherwise, as the kubelet's does.
func TestGRPCHealth(t *testing.T) {
	withHealth := grpc.NewServer()
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus("db", healthpb.HealthCheckResponse_NOT_SERVING)
	healthpb.RegisterHealthServer(withHealth, hs)
	healthy := serveGRPC(t, withHealth)
	bare := serveGRPC(t, grpc.NewServer())
	// A listener that accepts and never speaks.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := closed.Addr().String()
	closed.Close()

	for _, tc := range []struct {
		name, addr, service, want string
	}{
		{"serving", healthy, "", ""},
		{"not serving", healthy, "db", `service "db" is unhealthy (responded with NOT_SERVING)`},
		{"unknown service", healthy, "cache", "health RPC failed: NotFound"},
		{"no health service", bare, "", "does not implement the gRPC health protocol"},
		{"silent", silent.Addr().String(), "", "did not complete within the probe's timeout"},
		{"refused", refused, "", "health RPC failed: Unavailable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			err := grpcHealth(ctx, tc.addr, tc.service)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("probe failed: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("probe: %v, want an error with %q", err, tc.want)
			}
		})
	}
}
