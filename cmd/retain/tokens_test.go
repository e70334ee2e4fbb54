package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/retainhq/retain/platform/auth"
	"github.com/retainhq/retain/platform/auth/authtest"
)

// TestTokensIssueHelpHidesKey: -h of `tokens issue` with
// RETAIN_AUTH_PRIVATE_KEY set names the variable but never prints the key,
// which would land in terminal and CI logs; the key is still used.
func TestTokensIssueHelpHidesKey(t *testing.T) {
	keys := authtest.Keys(t)
	priv := keys.Private
	vars := map[string]string{"RETAIN_AUTH_PRIVATE_KEY": priv}
	for _, h := range []string{"-h", "--help"} {
		env, out, errOut := testEnv(vars)
		_ = run(context.Background(), env, []string{"tokens", "issue", h})
		help := out.String() + errOut.String()
		if !strings.Contains(help, "-private-key KEY") || !strings.Contains(help, "$RETAIN_AUTH_PRIVATE_KEY") {
			t.Errorf("tokens issue %s does not describe --private-key:\n%s", h, help)
		}
		// Any piece of the key is a leak, not only the whole of it.
		if strings.Contains(help, priv[:12]) || strings.Contains(help, "(default \"") {
			t.Errorf("tokens issue %s prints the private key:\n%s", h, help)
		}
	}

	// The variable still signs when --private-key is not given, and the
	// flag still wins over it.
	v := keys.Verifier
	env, out, _ := testEnv(vars)
	if err := run(context.Background(), env, []string{"tokens", "issue", "--tenant", "acme", "--scopes", "read"}); err != nil {
		t.Fatalf("issue with RETAIN_AUTH_PRIVATE_KEY: %v", err)
	}
	if _, err := v.Verify(strings.TrimSpace(out.String())); err != nil {
		t.Fatalf("token signed with RETAIN_AUTH_PRIVATE_KEY does not verify: %v", err)
	}
	otherPriv := authtest.Keys(t).Private
	env, out, _ = testEnv(vars)
	if err := run(context.Background(), env, []string{"tokens", "issue", "--tenant", "acme", "--scopes", "read", "--private-key", otherPriv}); err != nil {
		t.Fatalf("issue with --private-key: %v", err)
	}
	if _, err := v.Verify(strings.TrimSpace(out.String())); err == nil {
		t.Fatal("--private-key did not override RETAIN_AUTH_PRIVATE_KEY")
	}
}

// TestAPITokenKeptOutOfHelp: an API command's -h with RETAIN_TOKEN set
// does not print the token, and the variable is still the one sent.
func TestAPITokenKeptOutOfHelp(t *testing.T) {
	const token = "secret-token-value-1234"
	vars := map[string]string{"RETAIN_TOKEN": token, "RETAIN_ADDR": "127.0.0.1:1"}
	env, out, errOut := testEnv(vars)
	_ = run(context.Background(), env, []string{"campaigns", "list", "-h"})
	help := out.String() + errOut.String()
	if !strings.Contains(help, "$RETAIN_TOKEN") || strings.Contains(help, token[:10]) {
		t.Fatalf("campaigns list -h shows the token or does not name RETAIN_TOKEN:\n%s", help)
	}
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	e := addEndpointFlags(fs, env)
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	if err := e.resolve(); err != nil || e.token != token {
		t.Fatalf("resolve: token %q, %v; want RETAIN_TOKEN's", e.token, err)
	}
}

// TestTokensCommand issues tokens with a fresh key: without --ttl the
// token expires after the default 720h, never silently not at all; a token
// that does not expire takes --no-expiry, and --ttl 0 (which used to mean
// that) or a negative --ttl is refused naming the flag. stdout is the token
// alone; stderr names its id and key id, for a revocation list.
func TestTokensCommand(t *testing.T) {
	keys := authtest.Keys(t)
	priv, v, signer := keys.Private, keys.Verifier, keys.Signer
	issue := func(args ...string) (auth.Claims, string, error) {
		env, out, errOut := testEnv(map[string]string{"RETAIN_AUTH_PRIVATE_KEY": priv})
		if err := run(context.Background(), env, append([]string{"tokens", "issue", "--tenant", "acme", "--scopes", "read"}, args...)); err != nil {
			return auth.Claims{}, "", err
		}
		if strings.Count(out.String(), "\n") != 1 {
			t.Errorf("stdout is not the token alone: %q", out)
		}
		c, err := v.Verify(strings.TrimSpace(out.String()))
		return c, errOut.String(), err
	}
	within := func(got, want time.Time) bool { return got.After(want.Add(-time.Minute)) && !got.After(want) }

	c, info, err := issue()
	if err != nil || !within(c.ExpiresAt, time.Now().Add(720*time.Hour)) {
		t.Errorf("no --ttl: %+v, %v; want a token expiring in 720h", c, err)
	}
	if want := "issued token id (jti) " + c.ID + " for tenant acme, expires " + c.ExpiresAt.UTC().Format(time.RFC3339) + ", key id (kid) " + signer.KeyID() + "\n"; info != want {
		t.Errorf("stderr = %q, want %q", info, want)
	}
	if c, _, err := issue("--ttl", "1h"); err != nil || !within(c.ExpiresAt, time.Now().Add(time.Hour)) {
		t.Errorf("--ttl 1h: %+v, %v", c, err)
	}
	c, info, err = issue("--no-expiry")
	if err != nil || !c.ExpiresAt.IsZero() || !strings.Contains(info, "never expires") {
		t.Errorf("--no-expiry: %+v, %v, %q; want a token without expiry", c, err, info)
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--ttl", "0"}, "--ttl 0s: must be positive (pass --no-expiry for a token that does not expire)"},
		{[]string{"--ttl", "-1h"}, "--ttl -1h0m0s: must be positive"},
		{[]string{"--no-expiry", "--ttl", "1h"}, "--ttl and --no-expiry: give one of them"},
		{[]string{"acme"}, "tokens issue takes no arguments"},
	} {
		var ue usageError
		if _, _, err := issue(tt.args...); !errors.As(err, &ue) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: %v, want a usage error with %q", tt.args, err, tt.want)
		}
	}

	for _, h := range []string{"-h", "--help", "help"} {
		env, out, errOut := testEnv(nil)
		if err := run(context.Background(), env, []string{"tokens", h}); err != nil {
			t.Errorf("tokens %s: %v", h, err)
		}
		if !strings.Contains(out.String()+errOut.String(), "usage: retain tokens COMMAND") || strings.Contains(errOut.String(), "unknown") {
			t.Errorf("tokens %s printed:\n%s%s", h, out, errOut)
		}
	}
	env, _, errOut := testEnv(nil)
	if err := run(context.Background(), env, []string{"tokens", "issue", "-h"}); !strings.Contains(errOut.String(), "-private-key KEY") ||
		!strings.Contains(errOut.String(), "the key of 'retain dev'") || !strings.Contains(errOut.String(), "-ttl duration") ||
		!strings.Contains(errOut.String(), "(default 720h0m0s)") || !strings.Contains(errOut.String(), "-no-expiry") {
		t.Errorf("tokens issue -h: %v\n%s", err, errOut)
	}
}

// TestTokensKeygenNamesTheKeyID: keygen prints the kid its tokens will
// carry, so a rotation can be followed in the services' start-up logs.
func TestTokensKeygenNamesTheKeyID(t *testing.T) {
	env, out, _ := testEnv(nil)
	if err := run(context.Background(), env, []string{"tokens", "keygen"}); err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^# Key id \(the kid of the tokens it signs\): (\S+)\nRETAIN_AUTH_PUBLIC_KEY=\S+\nRETAIN_AUTH_PRIVATE_KEY=(\S+)\n`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("keygen printed:\n%s", out)
	}
	s, err := auth.NewSignerFromString(m[2])
	if err != nil || s.KeyID() != m[1] {
		t.Fatalf("printed kid %s, the key's is %v (%v)", m[1], s, err)
	}
}

// TestTokensInspect: inspect shows what a token says (tenant, scopes, id,
// expiry, key id) without any key, as text or JSON, from an argument or
// stdin; the id it shows, put in a revocation file, gets the token refused.
func TestTokensInspect(t *testing.T) {
	keys := authtest.Keys(t)
	pub, priv, signer := keys.Public, keys.Private, keys.Signer
	env, out, _ := testEnv(map[string]string{"RETAIN_AUTH_PRIVATE_KEY": priv})
	if err := run(context.Background(), env, []string{"tokens", "issue", "--tenant", "acme", "--scopes", "read,events:write", "--ttl", "2h"}); err != nil {
		t.Fatal(err)
	}
	tok := strings.TrimSpace(out.String())

	env, out, errOut := testEnv(nil)
	if err := run(context.Background(), env, []string{"tokens", "inspect", tok}); err != nil {
		t.Fatal(err)
	}
	text := out.String()
	for _, re := range []string{
		`(?m)^tenant +acme$`, `(?m)^scopes +read,events:write$`, `(?m)^jti +[A-Z0-9]{26}$`,
		`(?m)^expires +\S+Z \(in (1h59m|2h0m)0s\)$`, `(?m)^kid +` + regexp.QuoteMeta(signer.KeyID()) + `$`, `(?m)^issuer +retain$`,
	} {
		if !regexp.MustCompile(re).MatchString(text) {
			t.Errorf("inspect lacks %s:\n%s", re, text)
		}
	}
	if !strings.Contains(errOut.String(), "not verified") {
		t.Errorf("inspect does not say it did not verify: %q", errOut)
	}

	env, out, _ = testEnv(nil)
	env.stdin = strings.NewReader("Bearer " + tok + "\n")
	if err := run(context.Background(), env, []string{"tokens", "inspect", "-", "--output", "json"}); err != nil {
		t.Fatal(err)
	}
	var j struct {
		Tenant    string
		Scopes    []string
		JTI       string     `json:"jti"`
		KID       string     `json:"kid"`
		ExpiresAt *time.Time `json:"expires_at"`
		Verified  bool
	}
	if err := json.Unmarshal([]byte(out.String()), &j); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if j.Tenant != "acme" || len(j.Scopes) != 2 || j.JTI == "" || j.KID != signer.KeyID() || j.ExpiresAt == nil || j.Verified {
		t.Errorf("inspect --output json = %+v", j)
	}

	// The id inspect shows is the one to revoke.
	path := filepath.Join(t.TempDir(), "revoked")
	if err := os.WriteFile(path, []byte(j.JTI+" # inspected\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	revoked, err := auth.LoadRevocations(path)
	if err != nil {
		t.Fatal(err)
	}
	v, err := auth.NewVerifierFromString(pub, auth.WithRevocations(revoked))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(tok); !errors.Is(err, auth.ErrRevoked) {
		t.Errorf("the token whose inspected id is revoked: %v", err)
	}

	for _, bad := range [][]string{{"tokens", "inspect"}, {"tokens", "inspect", "a", "b"}, {"tokens", "inspect", "not-a-token-at-all"}} {
		env, _, _ := testEnv(nil)
		if err := run(context.Background(), env, bad); err == nil || strings.Contains(err.Error(), "not-a-token-at-all") {
			t.Errorf("%v: %v, want an error not echoing the input", bad, err)
		}
	}
}
