package auth

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestKeyIDIsTheJWKThumbprint: KeyID is RFC 7638's thumbprint, checked
// against the Ed25519 example of RFC 8037 appendix A.3, so JOSE tools name
// a key the same way.
func TestKeyIDIsTheJWKThumbprint(t *testing.T) {
	x, err := base64.RawURLEncoding.DecodeString("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := KeyID(ed25519.PublicKey(x)), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"; got != want {
		t.Fatalf("KeyID = %s, want %s", got, want)
	}
}

// rotationKeys are the old and the new signing key of a rotation.
func rotationKeys(t *testing.T) (old, cur *Signer) {
	t.Helper()
	return setup(t).signer, setup(t).signer
}

func verifierOf(t *testing.T, opts []VerifierOption, signers ...*Signer) *Verifier {
	t.Helper()
	var keys []ed25519.PublicKey
	for _, s := range signers {
		keys = append(keys, s.PublicKey())
	}
	v, err := NewVerifier(keys, append([]VerifierOption{WithClock(func() time.Time { return testNow })}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestVerifierRotation: with the old and the new key configured, tokens of
// both verify, each checked against the key its kid names; tokens from
// before key ids (no kid) are tried against every key. Once the old key is
// removed its tokens are refused, with a reason saying the key is unknown.
func TestVerifierRotation(t *testing.T) {
	old, cur := rotationKeys(t)
	claims := Claims{Tenant: "shop", Scopes: []string{ScopeRead}}
	oldTok, curTok := mustIssue(t, old, claims), mustIssue(t, cur, claims)
	legacyPayload := `{"iss":"retain","tid":"shop","scp":["read"],"iat":` + strconv.FormatInt(testNow.Unix(), 10) + `,"jti":"legacy"}`
	oldLegacy := forge(old, `{"alg":"EdDSA","typ":"JWT"}`, legacyPayload)
	curLegacy := forge(cur, `{"alg":"EdDSA","typ":"JWT"}`, legacyPayload)
	// The kid of the new key on a token signed by the old one: the kid
	// picks the key, it does not open a search through the others.
	misnamed := forge(old, `{"alg":"EdDSA","typ":"JWT","kid":"`+cur.KeyID()+`"}`, legacyPayload)
	unknownKid := forge(cur, `{"alg":"EdDSA","typ":"JWT","kid":"nobody"}`, legacyPayload)

	both := verifierOf(t, nil, cur, old)
	onlyNew := verifierOf(t, nil, cur)
	tests := []struct {
		name  string
		v     *Verifier
		token string
		want  error
	}{
		{"old token, both keys", both, oldTok, nil},
		{"new token, both keys", both, curTok, nil},
		{"old token without kid, both keys", both, oldLegacy, nil},
		{"new token without kid, both keys", both, curLegacy, nil},
		{"new token, old key removed", onlyNew, curTok, nil},
		{"old token, old key removed", onlyNew, oldTok, ErrUnknownKey},
		{"old token without kid, old key removed", onlyNew, oldLegacy, ErrBadSignature},
		{"kid of another key", both, misnamed, ErrBadSignature},
		{"kid of no key", both, unknownKid, ErrUnknownKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := tt.v.Verify(tt.token)
			if !errors.Is(err, tt.want) || (tt.want != nil && err == nil) {
				t.Fatalf("Verify = %+v, %v; want error %v", c, err, tt.want)
			}
			if tt.want == nil && c.Tenant != "shop" {
				t.Fatalf("claims = %+v", c)
			}
		})
	}
	if got := both.KeyIDs(); len(got) != 2 || got[0] != cur.KeyID() || got[1] != old.KeyID() {
		t.Errorf("KeyIDs = %v, want the new then the old key's", got)
	}
	_, err := onlyNew.Verify(oldTok)
	if got := publicReason(err); got != "invalid token: "+ErrUnknownKey.Error() {
		t.Errorf("callers are told %q of a removed key's token", got)
	}
}

// TestParsePublicKeys: the public key setting takes one key, as before, or
// several: base64 separated by commas or white space, PEM blocks, or both.
func TestParsePublicKeys(t *testing.T) {
	a, b := setup(t).signer.PublicKey(), setup(t).signer.PublicKey()
	pemOf := func(k ed25519.PublicKey) string {
		der, err := x509.MarshalPKIXPublicKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	}
	A, B := EncodePublicKey(a), EncodePublicKey(b)
	tests := []struct {
		name string
		in   string
		want []ed25519.PublicKey
		err  string
	}{
		{"one base64 key", A, []ed25519.PublicKey{a}, ""},
		{"one PEM key", pemOf(a), []ed25519.PublicKey{a}, ""},
		{"comma-separated", A + "," + B, []ed25519.PublicKey{a, b}, ""},
		{"comma and spaces", " " + A + " , " + B + " ", []ed25519.PublicKey{a, b}, ""},
		{"one per line", A + "\n" + B + "\n", []ed25519.PublicKey{a, b}, ""},
		{"two PEM blocks", pemOf(b) + pemOf(a), []ed25519.PublicKey{b, a}, ""},
		{"PEM then base64", pemOf(a) + "," + B, []ed25519.PublicKey{a, b}, ""},
		{"a key twice counts once", A + "," + A, []ed25519.PublicKey{a}, ""},
		{"empty", " , ", nil, "no key given"},
		{"second key bad", A + ",nope", nil, "key 2: parse public key"},
		{"unterminated PEM", A + "\n-----BEGIN PUBLIC KEY-----\nMCow", nil, "key 2: parse public key: invalid PEM"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParsePublicKeys(tt.in)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("ParsePublicKeys = %v, want an error with %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %d keys, want %d", len(got), len(tt.want))
			}
			for i := range got {
				if !got[i].Equal(tt.want[i]) {
					t.Errorf("key %d differs", i+1)
				}
			}
		})
	}
}

// TestInspect: a token's claims and kid are readable without the key (to
// find the id to revoke), and garbage is refused without being echoed.
func TestInspect(t *testing.T) {
	k := setup(t)
	tok := mustIssue(t, k.signer, Claims{Tenant: "shop", Scopes: []string{ScopeRead, ScopeEventsWrite}, ExpiresAt: testNow.Add(time.Hour), ID: "jti-1"})
	u, err := Inspect(tok)
	if err != nil {
		t.Fatal(err)
	}
	if u.Tenant != "shop" || strings.Join(u.Scopes, ",") != "read,events:write" || u.ID != "jti-1" || u.KeyID != k.signer.KeyID() ||
		u.Issuer != Issuer || !u.IssuedAt.Equal(testNow) || !u.ExpiresAt.Equal(testNow.Add(time.Hour)) {
		t.Fatalf("Inspect = %+v", u)
	}
	for _, bad := range []string{"", "abc", tok + ".x", "e30.e30.e30"} {
		if _, err := Inspect(bad); err == nil {
			t.Errorf("Inspect(%q) accepted", bad)
		}
	}
}
