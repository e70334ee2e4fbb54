package auth

import (
	"strings"
	"testing"
	"time"
)

// FuzzVerify feeds arbitrary text to the token parser: it must never panic,
// and anything it accepts must be a fully valid token.
func FuzzVerify(f *testing.F) {
	k := setup(f)
	good := mustIssue(f, k.signer, Claims{Tenant: "shop", Scopes: []string{ScopeRead}, ExpiresAt: testNow.Add(time.Hour)})
	f.Add(good)
	f.Add(mustIssue(f, k.signer, Claims{Tenant: "a", Scopes: []string{ScopeAdmin}}))
	f.Add(forge(k.signer, `{"alg":"none"}`, `{"tid":"x"}`))
	f.Add(forge(k.signer, `{"alg":"EdDSA"}`, `{"iss":"retain","tid":"shop","scp":["read"],"iat":1,"jti":"x","exp":1e99}`))
	f.Add(forge(k.signer, `{"alg":"EdDSA","kid":"`+k.signer.KeyID()+`"}`, `{"iss":"retain","tid":"shop","scp":["read"],"iat":1,"jti":"x"}`))
	f.Add(forge(k.signer, `{"alg":"EdDSA","kid":7}`, `{"iss":"retain","tid":"shop","scp":["read"],"iat":1,"jti":"x"}`))
	f.Add("")
	f.Add("..")
	f.Add("a.b.c")
	f.Add(strings.Repeat(".", 100))
	f.Add(good[:len(good)-3])

	f.Fuzz(func(t *testing.T, token string) {
		c, err := k.verifier.Verify(token)
		if err != nil {
			if c.Tenant != "" || c.Scopes != nil || c.ID != "" {
				t.Fatalf("claims returned with error %v", err)
			}
			return
		}
		if err := ValidateTenant(c.Tenant); err != nil {
			t.Fatalf("accepted token with invalid tenant: %v", err)
		}
		if c.ID == "" || c.IssuedAt.IsZero() {
			t.Fatalf("accepted token with missing claims: %+v", c)
		}
		// Accepted tokens verify deterministically.
		again, err := k.verifier.Verify(token)
		if err != nil || again.Tenant != c.Tenant {
			t.Fatalf("second Verify = %+v, %v", again, err)
		}
	})
}
