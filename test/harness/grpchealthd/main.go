// Command grpchealthd serves the standard gRPC health service
// (grpc.health.v1.Health) for the tests' containers: the server as a
// whole is SERVING, or NOT_SERVING while the file -down names exists.
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

func main() {
	port := flag.Int("port", 9000, "TCP port to serve on")
	down := flag.String("down", "", "report NOT_SERVING while this file exists")
	flag.Parse()
	l, err := net.Listen("tcp", fmt.Sprintf(":%d", *port))
	if err != nil {
		fmt.Fprintln(os.Stderr, "grpchealthd:", err)
		os.Exit(1)
	}
	hs := health.NewServer()
	s := grpc.NewServer()
	healthpb.RegisterHealthServer(s, hs)
	go func() {
		for {
			st := healthpb.HealthCheckResponse_SERVING
			if _, err := os.Stat(*down); *down != "" && err == nil {
				st = healthpb.HealthCheckResponse_NOT_SERVING
			}
			hs.SetServingStatus("", st)
			time.Sleep(100 * time.Millisecond)
		}
	}()
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
		<-sig
		s.Stop()
	}()
	fmt.Println("grpchealthd serving on", l.Addr())
	if err := s.Serve(l); err != nil {
		fmt.Fprintln(os.Stderr, "grpchealthd:", err)
		os.Exit(1)
	}
}
