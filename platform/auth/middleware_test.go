package auth

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

const testMethod = "/retain.test.v1.TestService/Write"

func TestUnaryServerInterceptor(t *testing.T) {
	k := setup(t)
	writer := mustIssue(t, k.signer, Claims{Tenant: "shop", Scopes: []string{ScopeEventsWrite}})
	reader := mustIssue(t, k.signer, Claims{Tenant: "shop", Scopes: []string{ScopeRead}})
	admin := mustIssue(t, k.signer, Claims{Tenant: "shop", Scopes: []string{ScopeAdmin}})
	expired, _ := k.signer.sign(wireClaims{Iss: Issuer, Tid: "shop", Scp: []string{ScopeAdmin}, Iat: testNow.Add(-2 * time.Hour).Unix(), Exp: testNow.Add(-time.Hour).Unix(), Jti: "x"})
	scopes := map[string]string{testMethod: ScopeEventsWrite}
	icpt := UnaryServerInterceptor(k.verifier, scopes)

	tests := []struct {
		name   string
		method string
		md     metadata.MD
		want   codes.Code
	}{
		{"scope present", testMethod, metadata.Pairs("authorization", "Bearer "+writer), codes.OK},
		{"scheme is case-insensitive", testMethod, metadata.Pairs("authorization", "bearer "+writer), codes.OK},
		{"admin implies scope", testMethod, metadata.Pairs("authorization", "Bearer "+admin), codes.OK},
		{"no metadata", testMethod, nil, codes.Unauthenticated},
		{"empty bearer", testMethod, metadata.Pairs("authorization", "Bearer "), codes.Unauthenticated},
		{"basic scheme", testMethod, metadata.Pairs("authorization", "Basic abc"), codes.Unauthenticated},
		{"garbage token", testMethod, metadata.Pairs("authorization", "Bearer abc.def.ghi"), codes.Unauthenticated},
		{"expired token", testMethod, metadata.Pairs("authorization", "Bearer "+expired), codes.Unauthenticated},
		{"two authorization values", testMethod, metadata.Pairs("authorization", "Bearer "+writer, "authorization", "Bearer "+writer), codes.Unauthenticated},
		{"wrong scope", testMethod, metadata.Pairs("authorization", "Bearer "+reader), codes.PermissionDenied},
		{"unlisted method refused even for admin", "/retain.test.v1.TestService/Other", metadata.Pairs("authorization", "Bearer "+admin), codes.PermissionDenied},
		{"unlisted method without token", "/retain.test.v1.TestService/Other", nil, codes.Unauthenticated},
		{"health is public", "/grpc.health.v1.Health/Check", nil, codes.OK},
		{"reflection is public", "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", nil, codes.OK},
		{"reflection alpha is public", "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", nil, codes.OK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			if tt.md != nil {
				ctx = metadata.NewIncomingContext(ctx, tt.md)
			}
			var seen Claims
			var called bool
			_, err := icpt(ctx, nil, &grpc.UnaryServerInfo{FullMethod: tt.method}, func(ctx context.Context, _ any) (any, error) {
				called = true
				seen, _ = ClaimsFromContext(ctx)
				return nil, nil
			})
			if got := status.Code(err); got != tt.want {
				t.Fatalf("code = %v (%v), want %v", got, err, tt.want)
			}
			if called != (tt.want == codes.OK) {
				t.Errorf("handler called = %v", called)
			}
			if tt.want == codes.OK && !IsPublicMethod(tt.method) && seen.Tenant != "shop" {
				t.Errorf("handler saw claims %+v", seen)
			}
			if err != nil {
				for _, tok := range []string{writer, reader, admin, expired} {
					if strings.Contains(err.Error(), tok) {
						t.Error("error echoes the token")
					}
				}
			}
		})
	}
}

type fakeStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (f fakeStream) Context() context.Context { return f.ctx }

func TestStreamServerInterceptor(t *testing.T) {
	k := setup(t)
	reader := mustIssue(t, k.signer, Claims{Tenant: "shop", Scopes: []string{ScopeRead}})
	icpt := StreamServerInterceptor(k.verifier, map[string]string{testMethod: ScopeEventsWrite, "/retain.test.v1.TestService/Watch": ScopeRead})

	tests := []struct {
		name   string
		method string
		token  string
		want   codes.Code
	}{
		{"scope present passes claims to the stream", "/retain.test.v1.TestService/Watch", reader, codes.OK},
		{"wrong scope", testMethod, reader, codes.PermissionDenied},
		{"no token", testMethod, "", codes.Unauthenticated},
		{"health watch is public", "/grpc.health.v1.Health/Watch", "", codes.OK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			if tt.token != "" {
				ctx = metadata.NewIncomingContext(ctx, metadata.Pairs("authorization", "Bearer "+tt.token))
			}
			err := icpt(nil, fakeStream{ctx: ctx}, &grpc.StreamServerInfo{FullMethod: tt.method}, func(_ any, ss grpc.ServerStream) error {
				if c, ok := ClaimsFromContext(ss.Context()); tt.token != "" && (!ok || c.Tenant != "shop") {
					return fmt.Errorf("stream context lacks claims")
				}
				return nil
			})
			if got := status.Code(err); got != tt.want {
				t.Fatalf("code = %v (%v), want %v", got, err, tt.want)
			}
		})
	}
}

func TestValidateMethodScopes(t *testing.T) {
	tests := []struct {
		name string
		m    map[string]string
		ok   bool
	}{
		{"valid", map[string]string{testMethod: ScopeEventsWrite, "/a.B/C": ScopeAdmin}, true},
		{"empty", nil, true},
		{"unknown scope", map[string]string{testMethod: "write"}, false},
		{"empty scope", map[string]string{testMethod: ""}, false},
		{"no leading slash", map[string]string{"a.B/C": ScopeRead}, false},
		{"no method", map[string]string{"/a.B/": ScopeRead}, false},
		{"extra segment", map[string]string{"/a.B/C/D": ScopeRead}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := ValidateMethodScopes(tt.m); (err == nil) != tt.ok {
				t.Errorf("ValidateMethodScopes = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

func TestRequireScope(t *testing.T) {
	k := setup(t)
	writer := mustIssue(t, k.signer, Claims{Tenant: "shop", Scopes: []string{ScopeEventsWrite}})
	reader := mustIssue(t, k.signer, Claims{Tenant: "shop", Scopes: []string{ScopeRead}})
	other := setup(t)
	foreign := mustIssue(t, other.signer, Claims{Tenant: "shop", Scopes: []string{ScopeEventsWrite}})

	h := RequireScope(k.verifier, ScopeEventsWrite)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _ := ClaimsFromContext(r.Context())
		fmt.Fprint(w, c.Tenant)
	}))

	tests := []struct {
		name      string
		header    []string
		status    int
		code      string
		challenge string
	}{
		{"valid token with scope", []string{"Bearer " + writer}, http.StatusOK, "", ""},
		{"missing header", nil, http.StatusUnauthorized, "unauthenticated", `Bearer realm="retain"`},
		{"not bearer", []string{"Token " + writer}, http.StatusUnauthorized, "unauthenticated", `Bearer realm="retain", error="invalid_request"`},
		{"two headers", []string{"Bearer " + writer, "Bearer " + writer}, http.StatusUnauthorized, "unauthenticated", `Bearer realm="retain", error="invalid_request"`},
		{"bad signature", []string{"Bearer " + foreign}, http.StatusUnauthorized, "unauthenticated", `Bearer realm="retain", error="invalid_token"`},
		{"wrong scope", []string{"Bearer " + reader}, http.StatusForbidden, "permission_denied", `Bearer realm="retain", error="insufficient_scope", scope="events:write"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodPost, "/v1/events", nil)
			for _, v := range tt.header {
				req.Header.Add("Authorization", v)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tt.status {
				t.Fatalf("status = %d, want %d; body %s", rec.Code, tt.status, rec.Body)
			}
			if got := rec.Header().Get("WWW-Authenticate"); got != tt.challenge {
				t.Errorf("WWW-Authenticate = %q, want %q", got, tt.challenge)
			}
			if tt.status == http.StatusOK {
				if rec.Body.String() != "shop" {
					t.Errorf("handler saw tenant %q", rec.Body)
				}
				return
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q", ct)
			}
			var body struct {
				Error struct{ Code, Message string }
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
				t.Fatalf("body %q: %v", rec.Body, err)
			}
			if body.Error.Code != tt.code || body.Error.Message == "" {
				t.Errorf("error body = %+v", body)
			}
			if strings.Contains(rec.Body.String(), writer) || strings.Contains(rec.Body.String(), foreign) {
				t.Error("body echoes the token")
			}
		})
	}
}

func TestBearerCredentials(t *testing.T) {
	c := BearerCredentials{Token: "secret-token"}
	md, err := c.GetRequestMetadata(context.Background())
	if err != nil || md["authorization"] != "Bearer secret-token" {
		t.Fatalf("metadata = %v, %v", md, err)
	}
	if c.RequireTransportSecurity() {
		t.Error("local-dev credentials require TLS")
	}
	if !(BearerCredentials{Token: "x", RequireTLS: true}).RequireTransportSecurity() {
		t.Error("RequireTLS ignored")
	}
	if _, err := (BearerCredentials{}).GetRequestMetadata(context.Background()); err == nil {
		t.Error("empty token accepted")
	}

	t.Run("never printed or logged", func(t *testing.T) {
		var b strings.Builder
		slog.New(slog.NewTextHandler(&b, nil)).Info("dial", "creds", c)
		for _, s := range []string{fmt.Sprint(c), fmt.Sprintf("%+v", c), fmt.Sprintf("%#v", c), b.String()} {
			if strings.Contains(s, "secret-token") {
				t.Errorf("token leaked: %s", s)
			}
		}
	})
}
