package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/retainhq/retain/platform/auth"
)

const tokensUsage = `usage: retain tokens COMMAND [flags]

Commands:
  keygen                                 print a new Ed25519 key pair as RETAIN_AUTH_PUBLIC_KEY
                                         and RETAIN_AUTH_PRIVATE_KEY
  issue --tenant T --scopes S [--ttl D]  sign a token with RETAIN_AUTH_PRIVATE_KEY (or the key of
                                         retain dev in this directory); it does not expire
                                         unless --ttl is given (e.g. --ttl 720h)`

// runTokens is `retain tokens keygen|issue`.
func runTokens(ctx context.Context, env *cliEnv, args []string) error {
	return subcommands(env, "tokens", tokensUsage, args, map[string]func([]string) error{
		"keygen": func(a []string) error { return runKeygen(env, a) },
		"issue":  func(a []string) error { return runIssue(env, a) },
	})
}

// runKeygen prints a new Ed25519 key pair as the environment variables the
// services and `retain tokens issue` read.
func runKeygen(env *cliEnv, args []string) error {
	fs := newFlags(env, "tokens keygen", "tokens keygen")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	pub, priv, err := auth.GenerateKeyPair()
	if err != nil {
		return err
	}
	fmt.Fprintf(env.stdout, "# Give the public key to every service; keep the private key where tokens are issued.\nRETAIN_AUTH_PUBLIC_KEY=%s\nRETAIN_AUTH_PRIVATE_KEY=%s\n", pub, priv)
	return nil
}

func runIssue(env *cliEnv, args []string) error {
	fs := newFlags(env, "tokens issue", "tokens issue --tenant T --scopes events:write,read [--ttl DURATION]")
	tenant := fs.String("tenant", "", "tenant the token is scoped to")
	scopes := fs.String("scopes", "", "comma-separated scopes: "+strings.Join(auth.Scopes(), ", "))
	ttl := fs.Duration("ttl", 0, "lifetime of the token, e.g. 720h (default 0: the token does not expire)")
	// The flag's default stays empty and the variable is read after
	// parsing: a default taken from it would print the private key in -h.
	keyFlag := fs.String("private-key", "", "Ed25519 private `KEY`, base64 or PEM (default: $RETAIN_AUTH_PRIVATE_KEY, else the key of 'retain dev' in this directory)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *keyFlag == "" {
		*keyFlag = env.getenv("RETAIN_AUTH_PRIVATE_KEY")
	}
	if *ttl < 0 {
		// A negative lifetime would have issued a token that never
		// expires: the opposite of what was asked for.
		return fmt.Errorf("--ttl %s: must not be negative (leave it out, or 0, for a token that does not expire)", *ttl)
	}
	key := *keyFlag
	if key == "" {
		b, err := os.ReadFile(findStateFile(devPrivateKeyFile))
		if err != nil {
			return errors.New("no private key: pass --private-key or RETAIN_AUTH_PRIVATE_KEY (see `retain tokens keygen`), or run from the directory of `retain dev` (or one below it)")
		}
		key = strings.TrimSpace(string(b))
	}
	signer, err := auth.NewSignerFromString(key)
	if err != nil {
		return fmt.Errorf("--private-key: %w", err)
	}
	var list []string
	for _, s := range strings.Split(*scopes, ",") {
		if s = strings.TrimSpace(s); s != "" {
			if !auth.KnownScope(s) {
				return fmt.Errorf("--scopes: unknown scope %q (known: %s)", s, strings.Join(auth.Scopes(), ", "))
			}
			list = append(list, s)
		}
	}
	if len(list) == 0 {
		return fmt.Errorf("--scopes: at least one of %s is required", strings.Join(auth.Scopes(), ", "))
	}
	c := auth.Claims{Tenant: *tenant, Scopes: list}
	if *ttl > 0 {
		c.ExpiresAt = time.Now().Add(*ttl)
	}
	tok, err := signer.Issue(c)
	if err != nil {
		return err // auth says "issue token: ..." itself
	}
	fmt.Fprintln(env.stdout, tok)
	return nil
}
