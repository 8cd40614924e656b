package node

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// grpcHealth runs a gRPC probe as the kubelet does: the standard health
// service's Check for service ("" is the server as a whole), over HTTP/2
// without TLS, must answer SERVING within ctx.
func grpcHealth(ctx context.Context, addr, service string) error {
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithUserAgent("kube-probe/vz-node"))
	if err != nil {
		return fmt.Errorf("gRPC probe of %s: %w", addr, err)
	}
	defer conn.Close()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: service})
	switch code := status.Code(err); {
	case err == nil:
	case code == codes.Unimplemented:
		return fmt.Errorf("gRPC probe of %s: the server does not implement the gRPC health protocol (grpc.health.v1.Health)", addr)
	case code == codes.DeadlineExceeded || errors.Is(ctx.Err(), context.DeadlineExceeded):
		return fmt.Errorf("gRPC probe of %s: the health RPC did not complete within the probe's timeout", addr)
	default:
		return fmt.Errorf("gRPC probe of %s: health RPC failed: %s: %s", addr, code, status.Convert(err).Message())
	}
	if st := resp.GetStatus(); st != healthpb.HealthCheckResponse_SERVING {
		return fmt.Errorf("gRPC probe of %s: service %q is unhealthy (responded with %s)", addr, service, st)
	}
	return nil
}
