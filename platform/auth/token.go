package auth

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// MaxTokenSize bounds what Verify will look at, so a hostile header cannot
// make it decode megabytes of JSON.
const MaxTokenSize = 4096

// DefaultClockSkew is how far the verifier's clock may disagree with the
// signer's before iat/exp checks fail.
const DefaultClockSkew = time.Minute

// maxKeyIDSize bounds the kid a verifier looks up; KeyID makes 43 bytes.
const maxKeyIDSize = 128

// Strict rejects non-canonical encodings, so one signature has exactly one
// valid textual form.
var b64 = base64.RawURLEncoding.Strict()

// wireHeader is fixed but for the key id: Retain only ever signs with
// Ed25519, and accepting anything else (notably "none" or HMAC algorithms)
// is the classic JWT hole.
type wireHeader struct {
	Alg  string          `json:"alg"`
	Typ  string          `json:"typ"`
	Kid  string          `json:"kid,omitempty"`
	Crit json.RawMessage `json:"crit,omitempty"`
}

type wireClaims struct {
	Iss string   `json:"iss"`
	Tid string   `json:"tid"`
	Scp []string `json:"scp"`
	Iat int64    `json:"iat"`
	Exp int64    `json:"exp,omitempty"`
	Jti string   `json:"jti"`
}

// Signer issues tokens. It is safe for concurrent use.
type Signer struct {
	key ed25519.PrivateKey
	kid string
	// header is the encoded header of every token: it names kid, so
	// verifiers holding several keys know which one to check.
	header string
	now    func() time.Time
}

// NewSigner returns a Signer using priv.
func NewSigner(priv ed25519.PrivateKey) (*Signer, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("new signer: private key has %d bytes, want %d", len(priv), ed25519.PrivateKeySize)
	}
	kid := KeyID(priv.Public().(ed25519.PublicKey))
	header, err := json.Marshal(wireHeader{Alg: "EdDSA", Typ: "JWT", Kid: kid})
	if err != nil {
		return nil, fmt.Errorf("new signer: encode header: %w", err)
	}
	return &Signer{key: priv, kid: kid, header: b64.EncodeToString(header), now: time.Now}, nil
}

// NewSignerFromString parses an encoded private key (see ParsePrivateKey).
func NewSignerFromString(priv string) (*Signer, error) {
	key, err := ParsePrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("new signer: %w", err)
	}
	return NewSigner(key)
}

// PublicKey is the key verifiers need.
func (s *Signer) PublicKey() ed25519.PublicKey {
	return s.key.Public().(ed25519.PublicKey)
}

// KeyID is the kid header of the tokens s signs (KeyID of its public key).
func (s *Signer) KeyID() string { return s.kid }

// Issue signs c. IssuedAt defaults to now and ID to a random id. The tenant
// must be valid, at least one scope is required and every scope must be known,
// and ExpiresAt, when set, must be after IssuedAt.
func (s *Signer) Issue(c Claims) (string, error) {
	if err := ValidateTenant(c.Tenant); err != nil {
		return "", fmt.Errorf("issue token: %w", err)
	}
	if len(c.Scopes) == 0 {
		return "", errors.New("issue token: at least one scope is required")
	}
	for _, sc := range c.Scopes {
		if !KnownScope(sc) {
			return "", fmt.Errorf("issue token: unknown scope %q (known: %s)", sc, strings.Join(Scopes(), ", "))
		}
	}
	if c.IssuedAt.IsZero() {
		c.IssuedAt = s.now()
	}
	if !c.ExpiresAt.IsZero() && !c.ExpiresAt.After(c.IssuedAt) {
		return "", errors.New("issue token: expiry must be after issue time")
	}
	if c.ID == "" {
		c.ID = rand.Text()
	}
	w := wireClaims{
		Iss: Issuer,
		Tid: c.Tenant,
		Scp: c.Scopes,
		Iat: c.IssuedAt.Unix(),
		Jti: c.ID,
	}
	if !c.ExpiresAt.IsZero() {
		w.Exp = c.ExpiresAt.Unix()
	}
	return s.sign(w)
}

// sign encodes and signs w without validating it (tests use it to build
// signed-but-invalid tokens).
func (s *Signer) sign(w wireClaims) (string, error) {
	payload, err := json.Marshal(w)
	if err != nil {
		return "", fmt.Errorf("issue token: encode claims: %w", err)
	}
	signingInput := s.header + "." + b64.EncodeToString(payload)
	sig := ed25519.Sign(s.key, []byte(signingInput))
	return signingInput + "." + b64.EncodeToString(sig), nil
}

// Verifier checks tokens offline against a set of public keys, and
// refuses revoked ones when given a revocation list. It is safe for
// concurrent use.
type Verifier struct {
	keys    []verifyKey
	revoked *Revocations
	skew    time.Duration
	now     func() time.Time
}

type verifyKey struct {
	id  string
	pub ed25519.PublicKey
}

// VerifierOption adjusts a Verifier.
type VerifierOption func(*Verifier)

// WithClockSkew sets the tolerated clock difference (default DefaultClockSkew).
func WithClockSkew(d time.Duration) VerifierOption {
	return func(v *Verifier) { v.skew = d }
}

// WithClock replaces time.Now, for tests.
func WithClock(now func() time.Time) VerifierOption {
	return func(v *Verifier) { v.now = now }
}

// WithRevocations makes Verify refuse the tokens whose id r lists (ErrRevoked).
// The look-up is in memory: r is re-read by its own Watch, never by Verify.
func WithRevocations(r *Revocations) VerifierOption {
	return func(v *Verifier) { v.revoked = r }
}

// NewVerifier returns a Verifier for tokens signed by the keys matching
// keys. Several keys are for rotation: tokens of the old signing key and of
// the new one both verify until the old key is removed.
func NewVerifier(keys []ed25519.PublicKey, opts ...VerifierOption) (*Verifier, error) {
	if len(keys) == 0 {
		return nil, errors.New("new verifier: no public key")
	}
	v := &Verifier{skew: DefaultClockSkew, now: time.Now}
	for i, pub := range keys {
		if len(pub) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("new verifier: public key %d has %d bytes, want %d", i+1, len(pub), ed25519.PublicKeySize)
		}
		v.keys = append(v.keys, verifyKey{id: KeyID(pub), pub: pub})
	}
	for _, o := range opts {
		o(v)
	}
	if v.skew < 0 {
		return nil, fmt.Errorf("new verifier: negative clock skew %s", v.skew)
	}
	return v, nil
}

// NewVerifierFromString parses one or more encoded public keys (see
// ParsePublicKeys).
func NewVerifierFromString(pub string, opts ...VerifierOption) (*Verifier, error) {
	keys, err := ParsePublicKeys(pub)
	if err != nil {
		return nil, fmt.Errorf("new verifier: %w", err)
	}
	return NewVerifier(keys, opts...)
}

// KeyIDs are the ids of the keys v accepts, in the order configured.
func (v *Verifier) KeyIDs() []string {
	ids := make([]string, len(v.keys))
	for i, k := range v.keys {
		ids[i] = k.id
	}
	return ids
}

// Verify checks token and returns its claims. Errors wrap ErrMissingToken,
// ErrMalformed, ErrUnknownKey, ErrBadSignature, ErrExpired, ErrNotYetValid,
// ErrRevoked or ErrBadTenant.
//
// A token naming its key (kid) is checked against that key only; one without
// (issued before tokens named their key) against each key in turn. The
// signature is checked before the claims are decoded, so unsigned input
// never reaches the claims decoder; ed25519.Verify does not branch on secret
// data, and there is no other secret to compare.
func (v *Verifier) Verify(token string) (Claims, error) {
	if token == "" {
		return Claims{}, ErrMissingToken
	}
	if len(token) > MaxTokenSize {
		return Claims{}, fmt.Errorf("%w: longer than %d bytes", ErrMalformed, MaxTokenSize)
	}
	head, rest, ok1 := strings.Cut(token, ".")
	payload, sig, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || strings.Contains(sig, ".") {
		return Claims{}, fmt.Errorf("%w: want three dot-separated parts", ErrMalformed)
	}

	h, err := checkHeader(head)
	if err != nil {
		return Claims{}, err
	}
	rawSig, err := b64.DecodeString(sig)
	if err != nil || len(rawSig) != ed25519.SignatureSize {
		return Claims{}, fmt.Errorf("%w: signature is not a base64url Ed25519 signature", ErrMalformed)
	}
	if err := v.checkSignature(h.Kid, []byte(token[:len(head)+1+len(payload)]), rawSig); err != nil {
		return Claims{}, err
	}

	rawClaims, err := b64.DecodeString(payload)
	if err != nil {
		return Claims{}, fmt.Errorf("%w: claims are not base64url", ErrMalformed)
	}
	var w wireClaims
	if err := decodeJSON(rawClaims, &w); err != nil {
		return Claims{}, fmt.Errorf("%w: claims: %v", ErrMalformed, err)
	}
	c, err := v.checkClaims(w)
	if err != nil {
		return Claims{}, err
	}
	if v.revoked != nil && v.revoked.Revoked(c.ID) {
		return Claims{}, ErrRevoked
	}
	return c, nil
}

func (v *Verifier) checkSignature(kid string, signed, sig []byte) error {
	if kid != "" {
		for _, k := range v.keys {
			if k.id == kid {
				if !ed25519.Verify(k.pub, signed, sig) {
					return ErrBadSignature
				}
				return nil
			}
		}
		return fmt.Errorf("%w: kid %q", ErrUnknownKey, truncate(kid, 50))
	}
	for _, k := range v.keys {
		if ed25519.Verify(k.pub, signed, sig) {
			return nil
		}
	}
	return ErrBadSignature
}

func checkHeader(head string) (wireHeader, error) {
	raw, err := b64.DecodeString(head)
	if err != nil {
		return wireHeader{}, fmt.Errorf("%w: header is not base64url", ErrMalformed)
	}
	var h wireHeader
	if err := decodeJSON(raw, &h); err != nil {
		return wireHeader{}, fmt.Errorf("%w: header: %v", ErrMalformed, err)
	}
	if h.Alg != "EdDSA" {
		return wireHeader{}, fmt.Errorf("%w: algorithm %q not accepted, want EdDSA", ErrMalformed, truncate(h.Alg, 20))
	}
	if h.Typ != "" && h.Typ != "JWT" {
		return wireHeader{}, fmt.Errorf("%w: type %q not accepted, want JWT", ErrMalformed, truncate(h.Typ, 20))
	}
	if len(h.Kid) > maxKeyIDSize {
		return wireHeader{}, fmt.Errorf("%w: kid longer than %d bytes", ErrMalformed, maxKeyIDSize)
	}
	// RFC 7515 says unknown critical extensions must be rejected; we know none.
	if len(h.Crit) > 0 {
		return wireHeader{}, fmt.Errorf("%w: critical header extensions not supported", ErrMalformed)
	}
	return h, nil
}

func (v *Verifier) checkClaims(w wireClaims) (Claims, error) {
	if w.Iss != Issuer {
		return Claims{}, fmt.Errorf("%w: issuer %q, want %q", ErrMalformed, truncate(w.Iss, 40), Issuer)
	}
	if err := ValidateTenant(w.Tid); err != nil {
		return Claims{}, err
	}
	if w.Jti == "" {
		return Claims{}, fmt.Errorf("%w: missing jti", ErrMalformed)
	}
	if w.Iat <= 0 {
		return Claims{}, fmt.Errorf("%w: missing iat", ErrMalformed)
	}
	if w.Exp < 0 || (w.Exp != 0 && w.Exp < w.Iat) {
		return Claims{}, fmt.Errorf("%w: exp before iat", ErrMalformed)
	}
	now := v.now()
	iat := time.Unix(w.Iat, 0)
	if iat.After(now.Add(v.skew)) {
		return Claims{}, ErrNotYetValid
	}
	c := Claims{Tenant: w.Tid, Scopes: w.Scp, IssuedAt: iat, ID: w.Jti}
	if w.Exp != 0 {
		c.ExpiresAt = time.Unix(w.Exp, 0)
		if !now.Before(c.ExpiresAt.Add(v.skew)) {
			return Claims{}, ErrExpired
		}
	}
	return c, nil
}

// decodeJSON decodes exactly one JSON object. Unknown fields are allowed so a
// newer signer can add claims, but trailing data is not.
func decodeJSON(raw []byte, dst any) error {
	if len(raw) == 0 || raw[0] != '{' {
		return errors.New("not a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(dst); err != nil {
		return errors.New("invalid JSON")
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("trailing data after JSON object")
	}
	return nil
}

// Unverified is what a token says about itself, read by Inspect without
// checking its signature.
type Unverified struct {
	Claims
	// KeyID is the kid header: the key that signed it, if it says so
	// (tokens from before key ids name none).
	KeyID string
	// Issuer is the iss claim ("retain" for Retain's tokens).
	Issuer string
}

// Inspect decodes token WITHOUT verifying it: for people finding a token's
// id to revoke it, or the key that signed it, never for granting access.
// Errors wrap ErrMissingToken or ErrMalformed and never contain the token.
func Inspect(token string) (Unverified, error) {
	if token == "" {
		return Unverified{}, ErrMissingToken
	}
	if len(token) > MaxTokenSize {
		return Unverified{}, fmt.Errorf("%w: longer than %d bytes", ErrMalformed, MaxTokenSize)
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return Unverified{}, fmt.Errorf("%w: want three dot-separated parts", ErrMalformed)
	}
	h, err := checkHeader(parts[0])
	if err != nil {
		return Unverified{}, err
	}
	raw, err := b64.DecodeString(parts[1])
	if err != nil {
		return Unverified{}, fmt.Errorf("%w: claims are not base64url", ErrMalformed)
	}
	var w wireClaims
	if err := decodeJSON(raw, &w); err != nil {
		return Unverified{}, fmt.Errorf("%w: claims: %v", ErrMalformed, err)
	}
	u := Unverified{KeyID: h.Kid, Issuer: w.Iss, Claims: Claims{Tenant: w.Tid, Scopes: w.Scp, ID: w.Jti}}
	if w.Iat > 0 {
		u.IssuedAt = time.Unix(w.Iat, 0)
	}
	if w.Exp > 0 {
		u.ExpiresAt = time.Unix(w.Exp, 0)
	}
	return u, nil
}
