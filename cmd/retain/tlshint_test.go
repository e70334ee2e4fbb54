package main

import (
	"context"
	"crypto/tls"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/retainhq/retain/platform/server"
	"github.com/retainhq/retain/platform/testenv"
)

// A call that fails because one side speaks TLS and the other does not
// says which flag to change, rather than only gRPC's transport words.
func TestCallErrorTellsATLSMismatch(t *testing.T) {
	ca := testenv.NewCA(t)
	issued := ca.Issue(t, "127.0.0.1")
	pair, err := tls.X509KeyPair(issued.CertPEM, issued.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	serve := func(opts ...grpc.ServerOption) string {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		s := grpc.NewServer(opts...)
		healthpb.RegisterHealthServer(s, health.NewServer())
		go func() { _ = s.Serve(lis) }()
		t.Cleanup(s.Stop)
		return lis.Addr().String()
	}
	withTLS := serve(grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{pair}})))
	plain := serve()
	tlsCreds, err := server.ClientTLS{CAFile: ca.File}.TransportCredentials()
	if err != nil {
		t.Fatal(err)
	}
	call := func(addr string, creds credentials.TransportCredentials) error {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
			return callError(err, "ingest", "read")
		}
		return nil
	}
	if err := call(withTLS, insecure.NewCredentials()); err == nil || !strings.Contains(err.Error(), "pass --tls") {
		t.Errorf("plaintext to a TLS server: %v, want the --tls hint", err)
	}
	if err := call(plain, tlsCreds); err == nil || !strings.Contains(err.Error(), "does not serve TLS") {
		t.Errorf("TLS to a plaintext server: %v, want the plaintext hint", err)
	}
	if err := call(withTLS, tlsCreds); err != nil {
		t.Errorf("TLS to a TLS server: %v", err)
	}
}
