package auth

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

var testNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

type keys struct {
	signer   *Signer
	verifier *Verifier
}

func setup(t testing.TB) keys {
	t.Helper()
	pub, priv, err := GenerateKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSignerFromString(priv)
	if err != nil {
		t.Fatal(err)
	}
	s.now = func() time.Time { return testNow }
	v, err := NewVerifierFromString(pub, WithClock(func() time.Time { return testNow }))
	if err != nil {
		t.Fatal(err)
	}
	return keys{signer: s, verifier: v}
}

func mustIssue(t testing.TB, s *Signer, c Claims) string {
	t.Helper()
	tok, err := s.Issue(c)
	if err != nil {
		t.Fatalf("issue: %v", err)
	}
	return tok
}

func TestIssueVerifyRoundTrip(t *testing.T) {
	k := setup(t)
	in := Claims{Tenant: "shop-1", Scopes: []string{ScopeEventsWrite, ScopeRead}, ExpiresAt: testNow.Add(time.Hour)}
	tok := mustIssue(t, k.signer, in)

	got, err := k.verifier.Verify(tok)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if got.Tenant != "shop-1" || strings.Join(got.Scopes, ",") != "events:write,read" {
		t.Errorf("claims = %+v", got)
	}
	if !got.IssuedAt.Equal(testNow) || !got.ExpiresAt.Equal(testNow.Add(time.Hour)) {
		t.Errorf("times = %v, %v", got.IssuedAt, got.ExpiresAt)
	}
	if got.ID == "" {
		t.Error("jti was not generated")
	}

	t.Run("header is the EdDSA JWT header naming the key", func(t *testing.T) {
		head, _, _ := strings.Cut(tok, ".")
		raw, _ := base64.RawURLEncoding.DecodeString(head)
		if want := `{"alg":"EdDSA","typ":"JWT","kid":"` + KeyID(k.signer.PublicKey()) + `"}`; string(raw) != want {
			t.Errorf("header = %s, want %s", raw, want)
		}
	})
	t.Run("payload uses the agreed claim names", func(t *testing.T) {
		parts := strings.Split(tok, ".")
		raw, _ := base64.RawURLEncoding.DecodeString(parts[1])
		var m map[string]any
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"iss", "tid", "scp", "iat", "exp", "jti"} {
			if _, ok := m[k]; !ok {
				t.Errorf("claim %q missing from %s", k, raw)
			}
		}
		if m["iss"] != "retain" {
			t.Errorf("iss = %v", m["iss"])
		}
	})
	t.Run("token without expiry never expires", func(t *testing.T) {
		tok := mustIssue(t, k.signer, Claims{Tenant: "t", Scopes: []string{ScopeRead}})
		late, err := NewVerifier([]ed25519.PublicKey{k.signer.PublicKey()}, WithClock(func() time.Time { return testNow.AddDate(10, 0, 0) }))
		if err != nil {
			t.Fatal(err)
		}
		c, err := late.Verify(tok)
		if err != nil || !c.ExpiresAt.IsZero() {
			t.Fatalf("verify = %+v, %v", c, err)
		}
	})
	t.Run("ids are unique", func(t *testing.T) {
		a, _ := k.verifier.Verify(mustIssue(t, k.signer, Claims{Tenant: "t", Scopes: []string{ScopeRead}}))
		b, _ := k.verifier.Verify(mustIssue(t, k.signer, Claims{Tenant: "t", Scopes: []string{ScopeRead}}))
		if a.ID == b.ID {
			t.Errorf("two tokens share jti %q", a.ID)
		}
	})
}

func TestIssueRejectsInvalidClaims(t *testing.T) {
	k := setup(t)
	tests := []struct {
		name   string
		claims Claims
		want   string
	}{
		{"bad tenant uppercase", Claims{Tenant: "Shop", Scopes: []string{ScopeRead}}, "bad tenant"},
		{"bad tenant empty", Claims{Tenant: "", Scopes: []string{ScopeRead}}, "bad tenant"},
		{"bad tenant dot", Claims{Tenant: "a.b", Scopes: []string{ScopeRead}}, "bad tenant"},
		{"bad tenant too long", Claims{Tenant: strings.Repeat("a", 64), Scopes: []string{ScopeRead}}, "bad tenant"},
		{"no scopes", Claims{Tenant: "t"}, "at least one scope"},
		{"unknown scope", Claims{Tenant: "t", Scopes: []string{"root"}}, "unknown scope"},
		{"expiry before issue", Claims{Tenant: "t", Scopes: []string{ScopeRead}, ExpiresAt: testNow.Add(-time.Second)}, "expiry must be after"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := k.signer.Issue(tt.claims)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Issue error = %v, want it to mention %q", err, tt.want)
			}
		})
	}
}

// forge builds a token with arbitrary header and payload, signed by s.
func forge(s *Signer, header, payload string) string {
	in := base64.RawURLEncoding.EncodeToString([]byte(header)) + "." + base64.RawURLEncoding.EncodeToString([]byte(payload))
	return in + "." + base64.RawURLEncoding.EncodeToString(ed25519.Sign(s.key, []byte(in)))
}

func TestVerifyRejects(t *testing.T) {
	k := setup(t)
	other := setup(t)
	good := mustIssue(t, k.signer, Claims{Tenant: "shop", Scopes: []string{ScopeRead}, ExpiresAt: testNow.Add(time.Hour)})
	parts := strings.Split(good, ".")
	iat := testNow.Unix()
	signed := func(w wireClaims) string {
		tok, err := k.signer.sign(w)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	payloadWith := func(tenant string) string {
		raw, _ := json.Marshal(wireClaims{Iss: Issuer, Tid: tenant, Scp: []string{ScopeAdmin}, Iat: iat, Jti: "x"})
		return base64.RawURLEncoding.EncodeToString(raw)
	}

	tests := []struct {
		name  string
		token string
		want  error
	}{
		{"empty", "", ErrMissingToken},
		{"one part", "abc", ErrMalformed},
		{"four parts", good + ".x", ErrMalformed},
		{"too long", strings.Repeat("a", MaxTokenSize+1), ErrMalformed},
		{"payload swapped for another tenant", parts[0] + "." + payloadWith("other") + "." + parts[2], ErrBadSignature},
		{"signature of another key", mustIssue(t, other.signer, Claims{Tenant: "shop", Scopes: []string{ScopeRead}}), ErrUnknownKey},
		{"signature bit flipped", parts[0] + "." + parts[1] + "." + flipSignatureBit(parts[2]), ErrBadSignature},
		{"signature truncated", parts[0] + "." + parts[1] + "." + parts[2][:20], ErrMalformed},
		{"signature padded base64", parts[0] + "." + parts[1] + "." + parts[2] + "==", ErrMalformed},
		{"alg none unsigned", forgeUnsigned(`{"alg":"none","typ":"JWT"}`, parts[1]), ErrMalformed},
		{"alg HS256", forge(k.signer, `{"alg":"HS256","typ":"JWT"}`, `{"iss":"retain","tid":"shop","scp":["admin"],"iat":1,"jti":"x"}`), ErrMalformed},
		{"alg missing", forge(k.signer, `{"typ":"JWT"}`, `{"iss":"retain","tid":"shop","scp":["admin"],"iat":1,"jti":"x"}`), ErrMalformed},
		{"alg lowercase", forge(k.signer, `{"alg":"eddsa"}`, `{"iss":"retain","tid":"shop","scp":["admin"],"iat":1,"jti":"x"}`), ErrMalformed},
		{"typ other", forge(k.signer, `{"alg":"EdDSA","typ":"at+jwt"}`, `{"iss":"retain","tid":"shop","scp":["admin"],"iat":1,"jti":"x"}`), ErrMalformed},
		{"crit header", forge(k.signer, `{"alg":"EdDSA","crit":["exp"]}`, `{"iss":"retain","tid":"shop","scp":["admin"],"iat":1,"jti":"x"}`), ErrMalformed},
		{"header not json", forge(k.signer, `EdDSA`, `{}`), ErrMalformed},
		{"header trailing data", forge(k.signer, `{"alg":"EdDSA"}}`, `{"iss":"retain","tid":"shop","scp":["admin"],"iat":1,"jti":"x"}`), ErrMalformed},
		{"claims not json", forge(k.signer, `{"alg":"EdDSA"}`, `hello`), ErrMalformed},
		{"claims wrong type", forge(k.signer, `{"alg":"EdDSA"}`, `{"iss":"retain","tid":"shop","scp":"admin","iat":1,"jti":"x"}`), ErrMalformed},
		{"claims fractional iat", forge(k.signer, `{"alg":"EdDSA"}`, `{"iss":"retain","tid":"shop","scp":["admin"],"iat":1.5,"jti":"x"}`), ErrMalformed},
		{"wrong issuer", signed(wireClaims{Iss: "evil", Tid: "shop", Scp: []string{ScopeRead}, Iat: iat, Jti: "x"}), ErrMalformed},
		{"missing jti", signed(wireClaims{Iss: Issuer, Tid: "shop", Scp: []string{ScopeRead}, Iat: iat}), ErrMalformed},
		{"missing iat", signed(wireClaims{Iss: Issuer, Tid: "shop", Scp: []string{ScopeRead}, Jti: "x"}), ErrMalformed},
		{"bad tenant", signed(wireClaims{Iss: Issuer, Tid: "Shop.*", Scp: []string{ScopeRead}, Iat: iat, Jti: "x"}), ErrBadTenant},
		{"empty tenant", signed(wireClaims{Iss: Issuer, Tid: "", Scp: []string{ScopeRead}, Iat: iat, Jti: "x"}), ErrBadTenant},
		{"expired beyond skew", signed(wireClaims{Iss: Issuer, Tid: "shop", Scp: []string{ScopeRead}, Iat: iat - 7200, Exp: iat - 61, Jti: "x"}), ErrExpired},
		{"issued in the future beyond skew", signed(wireClaims{Iss: Issuer, Tid: "shop", Scp: []string{ScopeRead}, Iat: iat + 61, Jti: "x"}), ErrNotYetValid},
		{"exp before iat", signed(wireClaims{Iss: Issuer, Tid: "shop", Scp: []string{ScopeRead}, Iat: iat, Exp: iat - 1, Jti: "x"}), ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := k.verifier.Verify(tt.token)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Verify error = %v, want %v", err, tt.want)
			}
			if c.Tenant != "" || c.Scopes != nil {
				t.Errorf("claims returned with an error: %+v", c)
			}
			if len(tt.token) > 16 && strings.Contains(err.Error(), tt.token) {
				t.Errorf("error echoes the token: %v", err)
			}
		})
	}
}

func TestVerifyToleratesClockSkew(t *testing.T) {
	k := setup(t)
	iat := testNow.Unix()
	tests := []struct {
		name string
		w    wireClaims
	}{
		{"expired within skew", wireClaims{Iss: Issuer, Tid: "shop", Scp: []string{ScopeRead}, Iat: iat - 3600, Exp: iat - 59, Jti: "x"}},
		{"issued slightly in the future", wireClaims{Iss: Issuer, Tid: "shop", Scp: []string{ScopeRead}, Iat: iat + 59, Jti: "x"}},
		{"unknown claims are ignored", wireClaims{Iss: Issuer, Tid: "shop", Scp: []string{ScopeRead, "future:scope"}, Iat: iat, Jti: "x"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, err := k.signer.sign(tt.w)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := k.verifier.Verify(tok); err != nil {
				t.Fatalf("Verify: %v", err)
			}
		})
	}
	t.Run("zero skew is strict", func(t *testing.T) {
		strict, err := NewVerifier([]ed25519.PublicKey{k.signer.PublicKey()}, WithClockSkew(0), WithClock(func() time.Time { return testNow }))
		if err != nil {
			t.Fatal(err)
		}
		tok, _ := k.signer.sign(wireClaims{Iss: Issuer, Tid: "shop", Scp: []string{ScopeRead}, Iat: iat - 10, Exp: iat, Jti: "x"})
		if _, err := strict.Verify(tok); !errors.Is(err, ErrExpired) {
			t.Fatalf("Verify = %v, want ErrExpired", err)
		}
	})
}

func TestHasScope(t *testing.T) {
	tests := []struct {
		name   string
		scopes []string
		want   string
		ok     bool
	}{
		{"exact scope", []string{ScopeRead}, ScopeRead, true},
		{"other scope", []string{ScopeRead}, ScopeEventsWrite, false},
		{"admin implies events:write", []string{ScopeAdmin}, ScopeEventsWrite, true},
		{"admin implies campaigns:write", []string{ScopeAdmin}, ScopeCampaignsWrite, true},
		{"no scopes", nil, ScopeRead, false},
		{"empty required scope is never granted by a plain scope", []string{ScopeRead}, "", false},
		{"write does not imply read", []string{ScopeEventsWrite, ScopeCampaignsWrite}, ScopeRead, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := (Claims{Scopes: tt.scopes}).HasScope(tt.want); got != tt.ok {
				t.Errorf("HasScope(%q) with %v = %v", tt.want, tt.scopes, got)
			}
		})
	}
}

func TestValidateTenant(t *testing.T) {
	tests := []struct {
		id string
		ok bool
	}{
		{"a", true},
		{"shop_1-eu", true},
		{"0shop", true},
		{strings.Repeat("a", 63), true},
		{strings.Repeat("a", 64), false},
		{"", false},
		{"-shop", false},
		{"_shop", false},
		{"Shop", false},
		{"shop.eu", false},
		{"shop*", false},
		{"shop>", false},
		{"shop eu", false},
		{"shop\n", false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%q", tt.id), func(t *testing.T) {
			err := ValidateTenant(tt.id)
			if (err == nil) != tt.ok {
				t.Errorf("ValidateTenant(%q) = %v, want ok=%v", tt.id, err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrBadTenant) {
				t.Errorf("error %v does not wrap ErrBadTenant", err)
			}
		})
	}
}

func TestKeyEncodings(t *testing.T) {
	pk, sk, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pkix, _ := x509.MarshalPKIXPublicKey(pk)
	pkcs8, _ := x509.MarshalPKCS8PrivateKey(sk)
	pubPEM := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pkix}))
	privPEM := string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}))

	pubs := []struct {
		name string
		in   string
		ok   bool
	}{
		{"raw base64", EncodePublicKey(pk), true},
		{"raw base64 with newline", EncodePublicKey(pk) + "\n", true},
		{"PEM PKIX", pubPEM, true},
		{"wrong length", base64.StdEncoding.EncodeToString(pk[:31]), false},
		{"not base64", "!!!", false},
		{"broken PEM", "-----BEGIN PUBLIC KEY-----\nxx", false},
		{"private key PEM", privPEM, false},
	}
	for _, tt := range pubs {
		t.Run("public "+tt.name, func(t *testing.T) {
			got, err := ParsePublicKey(tt.in)
			if (err == nil) != tt.ok {
				t.Fatalf("ParsePublicKey = %v, want ok=%v", err, tt.ok)
			}
			if tt.ok && !got.Equal(pk) {
				t.Error("parsed a different key")
			}
		})
	}

	corrupt := append(ed25519.PrivateKey(nil), sk...)
	corrupt[63] ^= 1
	privs := []struct {
		name string
		in   string
		ok   bool
	}{
		{"raw base64", EncodePrivateKey(sk), true},
		{"seed base64", base64.StdEncoding.EncodeToString(sk.Seed()), true},
		{"PEM PKCS8", privPEM, true},
		{"public half mismatch", EncodePrivateKey(corrupt), false},
		{"wrong length", base64.StdEncoding.EncodeToString(sk[:40]), false},
		{"public key PEM", pubPEM, false},
		{"not base64", "%%%", false},
	}
	for _, tt := range privs {
		t.Run("private "+tt.name, func(t *testing.T) {
			got, err := ParsePrivateKey(tt.in)
			if (err == nil) != tt.ok {
				t.Fatalf("ParsePrivateKey = %v, want ok=%v", err, tt.ok)
			}
			if tt.ok && !got.Equal(sk) {
				t.Error("parsed a different key")
			}
			if err != nil && strings.Contains(err.Error(), tt.in) {
				t.Error("error echoes key material")
			}
		})
	}

	t.Run("generated pair signs and verifies", func(t *testing.T) {
		pub, priv, err := GenerateKeyPair()
		if err != nil {
			t.Fatal(err)
		}
		s, err := NewSignerFromString(priv)
		if err != nil {
			t.Fatal(err)
		}
		v, err := NewVerifierFromString(pub)
		if err != nil {
			t.Fatal(err)
		}
		tok := mustIssue(t, s, Claims{Tenant: "t", Scopes: []string{ScopeAdmin}})
		if _, err := v.Verify(tok); err != nil {
			t.Fatal(err)
		}
		if EncodePublicKey(s.PublicKey()) != pub {
			t.Error("Signer.PublicKey does not match the generated public key")
		}
	})
	t.Run("constructors reject wrong key sizes", func(t *testing.T) {
		if _, err := NewSigner(sk[:10]); err == nil {
			t.Error("NewSigner accepted a short key")
		}
		if _, err := NewVerifier([]ed25519.PublicKey{pk[:10]}); err == nil {
			t.Error("NewVerifier accepted a short key")
		}
		if _, err := NewVerifier([]ed25519.PublicKey{pk}, WithClockSkew(-time.Second)); err == nil {
			t.Error("NewVerifier accepted a negative skew")
		}
	})
}

func flipSignatureBit(s string) string {
	// Flip a bit in the first byte so the change stays canonical base64.
	b, _ := base64.RawURLEncoding.DecodeString(s)
	b[0] ^= 1
	return base64.RawURLEncoding.EncodeToString(b)
}

func forgeUnsigned(header, payload string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(header)) + "." + payload + "."
}
