package main

import (
	"context"
	"flag"
	"strings"
	"testing"

	"github.com/retainhq/retain/platform/auth"
)

// TestTokensIssueHelpHidesKey: -h of `tokens issue` with
// RETAIN_AUTH_PRIVATE_KEY set names the variable but never prints the key,
// which would land in terminal and CI logs; the key is still used.
func TestTokensIssueHelpHidesKey(t *testing.T) {
	pub, priv, err := auth.GenerateKeyPair()
	if err != nil {
		t.Fatal(err)
	}
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
	v, err := auth.NewVerifierFromString(pub)
	if err != nil {
		t.Fatal(err)
	}
	env, out, _ := testEnv(vars)
	if err := run(context.Background(), env, []string{"tokens", "issue", "--tenant", "acme", "--scopes", "read"}); err != nil {
		t.Fatalf("issue with RETAIN_AUTH_PRIVATE_KEY: %v", err)
	}
	if _, err := v.Verify(strings.TrimSpace(out.String())); err != nil {
		t.Fatalf("token signed with RETAIN_AUTH_PRIVATE_KEY does not verify: %v", err)
	}
	_, otherPriv, err := auth.GenerateKeyPair()
	if err != nil {
		t.Fatal(err)
	}
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
