package service_test

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/retainhq/retain/platform/auth"
	"github.com/retainhq/retain/platform/auth/authtest"
	"github.com/retainhq/retain/platform/config"
	"github.com/retainhq/retain/platform/server/servertest"
	"github.com/retainhq/retain/platform/service"
	"github.com/retainhq/retain/platform/testenv"
	ingestv1 "github.com/retainhq/retain/proto/gen/go/retain/ingest/v1"
)

// authService is the smallest service on Deps: an ingest API that is not
// implemented (a call the auth interceptor lets through answers
// UNIMPLEMENTED) and one HTTP route behind the events:write scope.
type authService struct{ deps *service.Deps }

func (s authService) Run(ctx context.Context) error {
	return s.deps.Run(ctx, nil, func(ctx context.Context) error { <-ctx.Done(); return nil })
}
func (s authService) MethodScopes() map[string]string {
	return map[string]string{ingestv1.IngestService_Publish_FullMethodName: auth.ScopeEventsWrite}
}
func (s authService) RegisterGRPC(g *grpc.Server) {
	ingestv1.RegisterIngestServiceServer(g, ingestv1.UnimplementedIngestServiceServer{})
}
func (s authService) RegisterHTTP(mux *http.ServeMux) {
	mux.Handle("POST /v1/events", auth.RequireScope(s.deps.Verifier, auth.ScopeEventsWrite)(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	})))
}
func (s authService) Ready(ctx context.Context) error { return s.deps.Ready(ctx) }

// keyPair adds issuing this file's kind of token to a key pair.
type keyPair struct{ authtest.KeyPair }

func newKeyPair(t *testing.T) keyPair { return keyPair{authtest.Keys(t)} }

func (k keyPair) issue(t *testing.T, id string) string {
	t.Helper()
	tok, err := k.Signer.Issue(auth.Claims{Tenant: "shop", Scopes: []string{auth.ScopeEventsWrite}, ID: id, ExpiresAt: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func replaceFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path+".new", []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".new", path); err != nil {
		t.Fatal(err)
	}
}

// TestKeyRotationAndRevocation follows the rotation procedure of the
// README on a service hosted on real gRPC and HTTP servers, configured
// as the binary is: RETAIN_AUTH_PUBLIC_KEY with the old and the new key,
// RETAIN_AUTH_REVOKED_FILE. Tokens of both keys pass, revoked ids are
// refused and an id added to the file is refused without a restart; with
// the old key removed, its tokens are refused.
func TestKeyRotationAndRevocation(t *testing.T) {
	old, cur := newKeyPair(t), newKeyPair(t)
	revokedFile := filepath.Join(t.TempDir(), "revoked")
	replaceFile(t, revokedFile, "leaked-1\n")
	dbURL, natsURL := testenv.Postgres(t), testenv.NATS(t).URL()

	start := func(t *testing.T, publicKey string) *servertest.Running {
		t.Helper()
		s := newDemoSettings()
		if _, err := service.Parse("demo", s, nil, []string{
			"RETAIN_AUTH_PUBLIC_KEY=" + publicKey,
			"RETAIN_AUTH_REVOKED_FILE=" + revokedFile,
			"RETAIN_AUTH_REVOKED_INTERVAL=100ms",
			"RETAIN_DEMO_DATABASE_URL=" + dbURL,
			"RETAIN_NATS_URL=" + natsURL,
			"RETAIN_DEMO_BATCH_SIZE=1",
		}); err != nil {
			t.Fatal(err)
		}
		tel := servertest.Telemetry(t, "demo")
		deps, err := service.Open(context.Background(), s.Options("demo"), tel)
		if err != nil {
			t.Fatal(err)
		}
		r := servertest.Start(t, authService{deps}, tel, deps.Verifier, servertest.Loopback)
		t.Cleanup(func() {
			if err := r.Stop(); err != nil {
				t.Error(err)
			}
		})
		return r
	}
	grpcCode := func(r *servertest.Running, tok string) (codes.Code, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := ingestv1.NewIngestServiceClient(r.Conn).Publish(ctx, &ingestv1.PublishRequest{}, grpc.PerRPCCredentials(auth.BearerCredentials{Token: tok}))
		st := status.Convert(err)
		return st.Code(), st.Message()
	}
	httpStatus := func(t *testing.T, r *servertest.Running, tok string) int {
		req, _ := http.NewRequest(http.MethodPost, "http://"+r.Host.Addrs().HTTP+"/v1/events", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	expect := func(t *testing.T, r *servertest.Running, tok string, accepted bool, reason string) {
		t.Helper()
		code, msg := grpcCode(r, tok)
		wantCode, wantStatus := codes.Unimplemented, http.StatusNoContent
		if !accepted {
			wantCode, wantStatus = codes.Unauthenticated, http.StatusUnauthorized
		}
		if code != wantCode || !strings.Contains(msg, reason) {
			t.Errorf("gRPC: %v %q, want %v with %q", code, msg, wantCode, reason)
		}
		if got := httpStatus(t, r, tok); got != wantStatus {
			t.Errorf("HTTP: %d, want %d", got, wantStatus)
		}
	}

	oldTok, curTok, leaked, later := old.issue(t, "old-ok"), cur.issue(t, "cur-ok"), cur.issue(t, "leaked-1"), old.issue(t, "leaked-2")

	t.Run("both keys configured", func(t *testing.T) {
		r := start(t, cur.Public+","+old.Public)
		expect(t, r, oldTok, true, "")
		expect(t, r, curTok, true, "")
		expect(t, r, later, true, "")
		expect(t, r, leaked, false, "token revoked")

		replaceFile(t, revokedFile, "leaked-1\nleaked-2 # old key, leaked in a log\n")
		deadline := time.Now().Add(10 * time.Second)
		for code, _ := grpcCode(r, later); code != codes.Unauthenticated; code, _ = grpcCode(r, later) {
			if time.Now().After(deadline) {
				t.Fatal("an id added to the revocation file is still accepted after 10s")
			}
			time.Sleep(20 * time.Millisecond)
		}
		expect(t, r, later, false, "token revoked")
		expect(t, r, oldTok, true, "")
	})
	t.Run("old key removed", func(t *testing.T) {
		r := start(t, cur.Public)
		expect(t, r, curTok, true, "")
		expect(t, r, oldTok, false, "signed by a key this service does not accept")
		expect(t, r, leaked, false, "token revoked")
	})
}

// TestParseAuthSettings: the public key setting takes several keys, and
// the revocation settings are checked with the others, each naming its
// variable: a missing or invalid revocation file stops the start.
func TestParseAuthSettings(t *testing.T) {
	a, b := newKeyPair(t), newKeyPair(t)
	dir := t.TempDir()
	good, bad := filepath.Join(dir, "good"), filepath.Join(dir, "bad")
	replaceFile(t, good, "# none yet\n")
	replaceFile(t, bad, "id-1\nid-2 id-3\n")
	base := []string{"RETAIN_DEMO_DATABASE_URL=postgres://x@db/demo", "RETAIN_DEMO_BATCH_SIZE=1"}

	tests := []struct {
		name string
		env  []string
		want []string
	}{
		{"one key", []string{"RETAIN_AUTH_PUBLIC_KEY=" + a.Public}, nil},
		{"two keys and a list", []string{"RETAIN_AUTH_PUBLIC_KEY=" + a.Public + ", " + b.Public, "RETAIN_AUTH_REVOKED_FILE=" + good}, nil},
		{"bad second key", []string{"RETAIN_AUTH_PUBLIC_KEY=" + a.Public + ",xyz"}, []string{"RETAIN_AUTH_PUBLIC_KEY (-auth-public-key): key 2: parse public key"}},
		{"missing list", []string{"RETAIN_AUTH_PUBLIC_KEY=" + a.Public, "RETAIN_AUTH_REVOKED_FILE=" + filepath.Join(dir, "nope")},
			[]string{"RETAIN_AUTH_REVOKED_FILE (-auth-revoked-file): revocation file: stat " + filepath.Join(dir, "nope") + ": no such file"}},
		{"invalid list, interval too short", []string{"RETAIN_AUTH_PUBLIC_KEY=" + a.Public, "RETAIN_AUTH_REVOKED_FILE=" + bad, "RETAIN_AUTH_REVOKED_INTERVAL=0s"},
			[]string{"RETAIN_AUTH_REVOKED_FILE (-auth-revoked-file): revocation file " + bad + ": line 2: want one token id per line",
				"RETAIN_AUTH_REVOKED_INTERVAL (-auth-revoked-interval): must be at least 100ms, got 0s"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newDemoSettings()
			_, err := service.Parse("demo", s, nil, append(tt.env, base...))
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var ve *config.ValidationError
			if !errors.As(err, &ve) || len(ve.Problems) != len(tt.want) {
				t.Fatalf("Parse = %v, want %d problems", err, len(tt.want))
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("report lacks %q:\n%v", w, err)
				}
			}
		})
	}
}
