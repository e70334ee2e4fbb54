package auth

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/retainhq/retain/platform/testenv"
	ingestv1 "github.com/retainhq/retain/proto/gen/go/retain/ingest/v1"
)

func TestParseRevocations(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string
		err  string
	}{
		{"empty", "", nil, ""},
		{"ids, comments, blank lines, CRLF", "# revoked tokens\nAAA\r\n\n  BBB  # leaked in ticket 42\n#CCC\n", []string{"AAA", "BBB"}, ""},
		{"two ids on a line", "AAA BBB\n", nil, "line 1: want one token id per line"},
		{"a whole token", "ok\neyJhbGciOi.eyJpc3Mi.c2ln\n", nil, "line 2: holds a whole token"},
		{"too long", strings.Repeat("x", 257), nil, "line 1: token id longer than 256 bytes"},
		{"not ASCII", "AAA\nd\u00e9j\u00e0\n", nil, "line 2: token id has a character other than printable ASCII"},
		{"binary", "AAA\n\x00\x01\n", nil, "line 2: token id has a character"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseRevocations([]byte(tt.in))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("ParseRevocations = %v, want an error with %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
			for _, id := range tt.want {
				if _, ok := got[id]; !ok {
					t.Errorf("%q not revoked", id)
				}
			}
		})
	}
	t.Run("errors never quote the line", func(t *testing.T) {
		_, err := ParseRevocations([]byte("secretpart.secretpart.secretpart\n"))
		if err == nil || strings.Contains(err.Error(), "secretpart") {
			t.Fatalf("error %v", err)
		}
	})
}

func FuzzParseRevocations(f *testing.F) {
	f.Add([]byte("AAA\n# c\nBBB # c\n"))
	f.Add([]byte("a.b.c"))
	f.Add([]byte("\x00\n\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ids, err := ParseRevocations(data)
		if err != nil {
			return
		}
		for id := range ids {
			if id == "" || strings.HasPrefix(id, "#") || strings.ContainsAny(id, " \t\r\n") || len(id) > maxRevokedIDSize {
				t.Fatalf("accepted id %q", id)
			}
		}
	})
}

// writeFile replaces path as Kubernetes updates a mounted ConfigMap: a new
// file renamed over the old one, so no reader sees half of it.
func writeFile(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// TestRevocationsReload: a changed file is picked up; an unreadable or
// invalid one is an error at load, and at a reload keeps the last good list.
func TestRevocationsReload(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "revoked")

	if _, err := LoadRevocations(path); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Fatalf("LoadRevocations of a missing file = %v", err)
	}
	writeFile(t, path, "AAA\nnot one id\n")
	if _, err := LoadRevocations(path); err == nil || !strings.Contains(err.Error(), path+": line 2") {
		t.Fatalf("LoadRevocations of an invalid file = %v, want the file and line named", err)
	}
	if _, err := LoadRevocations(dir); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("LoadRevocations of a directory = %v", err)
	}

	writeFile(t, path, "AAA\n")
	r, err := LoadRevocations(path)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Revoked("AAA") || r.Revoked("BBB") || r.Len() != 1 {
		t.Fatal("the file's ids are not the ones revoked")
	}
	if changed, err := r.Reload(); changed || err != nil {
		t.Fatalf("Reload of an unchanged file = %v, %v", changed, err)
	}
	writeFile(t, path, "AAA\nBBB\n")
	if changed, err := r.Reload(); !changed || err != nil || !r.Revoked("BBB") {
		t.Fatalf("Reload after a change = %v, %v; BBB revoked: %v", changed, err, r.Revoked("BBB"))
	}
	writeFile(t, path, "AAA BBB\n")
	if _, err := r.Reload(); err == nil {
		t.Fatal("Reload accepted an invalid file")
	}
	if !r.Revoked("AAA") || !r.Revoked("BBB") {
		t.Fatal("a failed reload dropped the last good list")
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Reload(); err == nil || !r.Revoked("BBB") {
		t.Fatalf("Reload of a removed file = %v; the last good list must stay", err)
	}
}

// TestRevocationOverRealServers: a gRPC and an HTTP server verifying with
// the old and the new key and a revocation list file. A revoked token is
// refused like an expired one (UNAUTHENTICATED / 401 invalid_token) with a
// reason saying revoked; the others pass. An id added to the file is
// refused once Watch has re-read it, with no restart; a broken edit is
// logged once and the last good list stays in force.
func TestRevocationOverRealServers(t *testing.T) {
	old, cur := rotationKeys(t)
	path := filepath.Join(t.TempDir(), "revoked")
	writeFile(t, path, "# revoked\nleaked-1\n")
	revoked, err := LoadRevocations(path)
	if err != nil {
		t.Fatal(err)
	}
	v := verifierOf(t, []VerifierOption{WithRevocations(revoked)}, cur, old)
	logs := &testenv.SyncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	watched := make(chan struct{})
	go func() {
		revoked.Watch(ctx, 20*time.Millisecond, slog.New(slog.NewTextHandler(logs, nil)))
		close(watched)
	}()
	t.Cleanup(func() { cancel(); <-watched })

	issue := func(s *Signer, id string) string {
		return mustIssue(t, s, Claims{Tenant: "shop", Scopes: []string{ScopeEventsWrite}, ID: id, ExpiresAt: testNow.Add(time.Hour)})
	}
	leaked, oldOK, curOK, later := issue(cur, "leaked-1"), issue(old, "old-ok"), issue(cur, "cur-ok"), issue(old, "leaked-2")
	expired, _ := cur.sign(wireClaims{Iss: Issuer, Tid: "shop", Scp: []string{ScopeEventsWrite}, Iat: testNow.Add(-2 * time.Hour).Unix(), Exp: testNow.Add(-time.Hour).Unix(), Jti: "exp"})

	// gRPC: the interceptors in front of a real server; a call that
	// passes them reaches the unimplemented Publish.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	scopes := map[string]string{ingestv1.IngestService_Publish_FullMethodName: ScopeEventsWrite}
	gs := grpc.NewServer(grpc.UnaryInterceptor(UnaryServerInterceptor(v, scopes)))
	ingestv1.RegisterIngestServiceServer(gs, ingestv1.UnimplementedIngestServiceServer{})
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	client := ingestv1.NewIngestServiceClient(conn)
	callGRPC := func(tok string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := client.Publish(ctx, &ingestv1.PublishRequest{}, grpc.PerRPCCredentials(BearerCredentials{Token: tok}))
		return err
	}

	hs := httptest.NewServer(RequireScope(v, ScopeEventsWrite)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	})))
	t.Cleanup(hs.Close)
	callHTTP := func(tok string) (int, string, string) {
		req, _ := http.NewRequest(http.MethodPost, hs.URL, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := hs.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body struct {
			Error struct{ Code, Message string }
		}
		_ = json.NewDecoder(resp.Body).Decode(&body)
		return resp.StatusCode, body.Error.Code + ": " + body.Error.Message, resp.Header.Get("WWW-Authenticate")
	}

	type answer struct {
		code    codes.Code
		status  int
		message string
	}
	accepted := answer{codes.Unimplemented, http.StatusNoContent, ""}
	check := func(t *testing.T, tok string, want answer) {
		t.Helper()
		err := callGRPC(tok)
		if st := status.Convert(err); st.Code() != want.code || !strings.Contains(st.Message(), want.message) {
			t.Errorf("gRPC: %v, want %v with %q", err, want.code, want.message)
		}
		code, msg, challenge := callHTTP(tok)
		if code != want.status || !strings.Contains(msg, want.message) {
			t.Errorf("HTTP: %d %q, want %d with %q", code, msg, want.status, want.message)
		}
		if want.status == http.StatusUnauthorized && challenge != `Bearer realm="retain", error="invalid_token"` {
			t.Errorf("HTTP challenge %q", challenge)
		}
	}

	t.Run("revoked is refused as expired is, saying revoked", func(t *testing.T) {
		check(t, expired, answer{codes.Unauthenticated, http.StatusUnauthorized, "invalid token: token expired"})
		check(t, leaked, answer{codes.Unauthenticated, http.StatusUnauthorized, "invalid token: token revoked"})
	})
	t.Run("other tokens of either key pass", func(t *testing.T) {
		for _, tok := range []string{oldOK, curOK, later} {
			check(t, tok, accepted)
		}
	})
	t.Run("an id added to the file is refused without a restart", func(t *testing.T) {
		writeFile(t, path, "leaked-1\nleaked-2 # old key, found in a repo\n")
		waitFor(t, func() bool { return callGRPC(later) != nil && status.Code(callGRPC(later)) == codes.Unauthenticated })
		check(t, later, answer{codes.Unauthenticated, http.StatusUnauthorized, "token revoked"})
		check(t, oldOK, accepted)
		logs.WaitFor(t, "token revocation list reloaded")
	})
	t.Run("a broken edit keeps the last good list and is logged once", func(t *testing.T) {
		writeFile(t, path, "leaked-1 leaked-2\n")
		logs.WaitFor(t, "token revocation list not reloaded")
		time.Sleep(100 * time.Millisecond) // a few more ticks on the broken file
		check(t, leaked, answer{codes.Unauthenticated, http.StatusUnauthorized, "token revoked"})
		check(t, later, answer{codes.Unauthenticated, http.StatusUnauthorized, "token revoked"})
		if n := strings.Count(logs.String(), "token revocation list not reloaded"); n != 1 {
			t.Errorf("the broken file was logged %d times, want once:\n%s", n, logs)
		}
		// Fixed: lifting a revocation works too.
		writeFile(t, path, "leaked-1\n")
		waitFor(t, func() bool { return callGRPC(later) != nil && status.Code(callGRPC(later)) == codes.Unimplemented })
		check(t, leaked, answer{codes.Unauthenticated, http.StatusUnauthorized, "token revoked"})
	})
	t.Run("the old key removed refuses its tokens", func(t *testing.T) {
		onlyNew := verifierOf(t, []VerifierOption{WithRevocations(revoked)}, cur)
		if _, err := onlyNew.Verify(oldOK); !errors.Is(err, ErrUnknownKey) {
			t.Fatalf("old key's token with the old key removed: %v", err)
		}
	})
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
