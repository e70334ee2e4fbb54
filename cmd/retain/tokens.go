package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/retainhq/retain/platform/auth"
)

// defaultTokenTTL is the lifetime of a token issued without --ttl: a token
// that never expires has to be asked for (--no-expiry), as a leaked one
// stays valid until it is revoked.
const defaultTokenTTL = 720 * time.Hour

const tokensUsage = `usage: retain tokens COMMAND [flags]

Commands:
  keygen                                 print a new Ed25519 key pair as RETAIN_AUTH_PUBLIC_KEY
                                         and RETAIN_AUTH_PRIVATE_KEY, and its key id (kid)
  issue --tenant T --scopes S [--ttl D]  sign a token with RETAIN_AUTH_PRIVATE_KEY (or the key of
                                         retain dev in this directory); it expires after --ttl
                                         (default 720h), or never with --no-expiry; its id (jti),
                                         key id and expiry go to stderr
  inspect TOKEN|-                        print a token's claims (tenant, scopes, jti, expiry, kid)
                                         WITHOUT verifying it, e.g. to find the id to revoke`

// runTokens is `retain tokens keygen|issue|inspect`.
func runTokens(ctx context.Context, env *cliEnv, args []string) error {
	return subcommands(env, "tokens", tokensUsage, args, map[string]func([]string) error{
		"keygen":  func(a []string) error { return runKeygen(env, a) },
		"issue":   func(a []string) error { return runIssue(env, a) },
		"inspect": func(a []string) error { return runInspect(env, a) },
	})
}

// runKeygen prints a new Ed25519 key pair as the environment variables the
// services and `retain tokens issue` read.
func runKeygen(env *cliEnv, args []string) error {
	fs := newFlags(env, "tokens keygen", "tokens keygen")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := noArgs(fs.Args(), "tokens keygen", ""); err != nil {
		return err
	}
	pub, priv, err := auth.GenerateKeyPair()
	if err != nil {
		return err
	}
	key, err := auth.ParsePublicKey(pub)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.stdout, "# Give the public key to every service; keep the private key where tokens are issued.\n"+
		"# Key id (the kid of the tokens it signs): %s\nRETAIN_AUTH_PUBLIC_KEY=%s\nRETAIN_AUTH_PRIVATE_KEY=%s\n", auth.KeyID(key), pub, priv)
	return nil
}

func runIssue(env *cliEnv, args []string) error {
	fs := newFlags(env, "tokens issue", "tokens issue --tenant T --scopes events:write,read [--ttl DURATION | --no-expiry]")
	tenant := fs.String("tenant", "", "tenant the token is scoped to")
	scopes := fs.String("scopes", "", "comma-separated scopes: "+strings.Join(auth.Scopes(), ", "))
	ttl := fs.Duration("ttl", defaultTokenTTL, "lifetime of the token, e.g. 2160h")
	noExpiry := fs.Bool("no-expiry", false, "issue a token that never expires (valid until its key is removed or its id revoked)")
	// The flag's default stays empty and the variable is read after
	// parsing: a default taken from it would print the private key in -h.
	keyFlag := fs.String("private-key", "", "Ed25519 private `KEY`, base64 or PEM (default: $RETAIN_AUTH_PRIVATE_KEY, else the key of 'retain dev' in this directory)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := noArgs(fs.Args(), "tokens issue", "the tenant and scopes are flags: --tenant T --scopes S"); err != nil {
		return err
	}
	if *keyFlag == "" {
		*keyFlag = env.getenv("RETAIN_AUTH_PRIVATE_KEY")
	}
	if *noExpiry && flagSet(fs, "ttl") {
		return usagef("--ttl and --no-expiry: give one of them")
	}
	if !*noExpiry && *ttl <= 0 {
		// 0 used to mean "never expires": say how to ask for that now
		// rather than guess.
		return usagef("--ttl %s: must be positive (pass --no-expiry for a token that does not expire)", *ttl)
	}
	var list []string
	for _, s := range strings.Split(*scopes, ",") {
		if s = strings.TrimSpace(s); s != "" {
			if !auth.KnownScope(s) {
				return usagef("--scopes: unknown scope %q (known: %s)", s, strings.Join(auth.Scopes(), ", "))
			}
			list = append(list, s)
		}
	}
	if len(list) == 0 {
		return usagef("--scopes: at least one of %s is required", strings.Join(auth.Scopes(), ", "))
	}
	// As --scopes, before the key is read: the signer's own check, which
	// would refuse it only after, and not as a usage error naming the flag.
	if err := auth.ValidateTenant(*tenant); err != nil {
		return usagef("--tenant: %v", err)
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
	c := auth.Claims{Tenant: *tenant, Scopes: list, IssuedAt: time.Now()}
	if !*noExpiry {
		c.ExpiresAt = c.IssuedAt.Add(*ttl)
	}
	tok, err := signer.Issue(c)
	if err != nil {
		return err // auth says "issue token: ..." itself
	}
	// Issue chose the id; it is what a revocation list names.
	issued, err := auth.Inspect(tok)
	if err != nil {
		return err
	}
	fmt.Fprintln(env.stdout, tok)
	// stdout is the token alone, for $(...); the rest is for the person
	// issuing it.
	expiry := "never expires"
	if !c.ExpiresAt.IsZero() {
		expiry = "expires " + c.ExpiresAt.UTC().Format(time.RFC3339)
	}
	fmt.Fprintf(env.stderr, "issued token id (jti) %s for tenant %s, %s, key id (kid) %s\n", issued.ID, c.Tenant, expiry, issued.KeyID)
	return nil
}

// flagSet reports whether the flag name was given on the command line.
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

func runInspect(env *cliEnv, args []string) error {
	fs := newFlags(env, "tokens inspect", "tokens inspect TOKEN|- [--output json]")
	output := fs.String("output", "text", "text or json")
	pos, rest := splitPositional(args)
	if err := parseFlags(fs, rest); err != nil {
		return err
	}
	arg, err := oneArg(append(pos, fs.Args()...), "TOKEN (or - to read it from stdin)")
	if err != nil {
		return err
	}
	if *output != "text" && *output != "json" {
		return usagef("--output %q: must be text or json", *output)
	}
	tok := arg
	if arg == "-" {
		line, err := bufio.NewReader(io.LimitReader(env.stdin, auth.MaxTokenSize+2)).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("read token from stdin: %w", err)
		}
		tok = line
	}
	tok = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(tok), "Bearer "))
	u, err := auth.Inspect(tok)
	if err != nil {
		return fmt.Errorf("not a Retain token: %w", err)
	}
	if *output == "json" {
		type inspected struct {
			Tenant    string     `json:"tenant"`
			Scopes    []string   `json:"scopes"`
			ID        string     `json:"jti"`
			KeyID     string     `json:"kid,omitempty"`
			Issuer    string     `json:"iss"`
			IssuedAt  *time.Time `json:"issued_at,omitempty"`
			ExpiresAt *time.Time `json:"expires_at"`
			Verified  bool       `json:"verified"`
		}
		j := inspected{Tenant: u.Tenant, Scopes: u.Scopes, ID: u.ID, KeyID: u.KeyID, Issuer: u.Issuer}
		if !u.IssuedAt.IsZero() {
			t := u.IssuedAt.UTC()
			j.IssuedAt = &t
		}
		if !u.ExpiresAt.IsZero() {
			t := u.ExpiresAt.UTC()
			j.ExpiresAt = &t
		}
		b, err := json.MarshalIndent(j, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(env.stdout, string(b))
		return err
	}
	w := env.stdout
	fmt.Fprintf(w, "tenant   %s\n", u.Tenant)
	fmt.Fprintf(w, "scopes   %s\n", strings.Join(u.Scopes, ","))
	fmt.Fprintf(w, "jti      %s\n", u.ID)
	if u.IssuedAt.IsZero() {
		fmt.Fprintf(w, "issued   (not said)\n")
	} else {
		fmt.Fprintf(w, "issued   %s\n", u.IssuedAt.UTC().Format(time.RFC3339))
	}
	switch now := time.Now(); {
	case u.ExpiresAt.IsZero():
		fmt.Fprintf(w, "expires  never\n")
	case u.ExpiresAt.After(now):
		fmt.Fprintf(w, "expires  %s (in %s)\n", u.ExpiresAt.UTC().Format(time.RFC3339), u.ExpiresAt.Sub(now).Round(time.Minute))
	default:
		fmt.Fprintf(w, "expires  %s (expired %s ago)\n", u.ExpiresAt.UTC().Format(time.RFC3339), now.Sub(u.ExpiresAt).Round(time.Minute))
	}
	if u.KeyID == "" {
		fmt.Fprintf(w, "kid      (none: issued before tokens named their key)\n")
	} else {
		fmt.Fprintf(w, "kid      %s\n", u.KeyID)
	}
	fmt.Fprintf(w, "issuer   %s\n", u.Issuer)
	fmt.Fprintln(env.stderr, "(not verified: the signature was not checked)")
	return nil
}
