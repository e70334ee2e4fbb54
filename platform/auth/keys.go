package auth

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"strings"
)

// GenerateKeyPair returns a new Ed25519 key pair encoded as standard base64 of
// the raw public key (32 bytes) and raw private key (64 bytes).
func GenerateKeyPair() (pub, priv string, err error) {
	pk, sk, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", "", fmt.Errorf("generate ed25519 key: %w", err)
	}
	return EncodePublicKey(pk), EncodePrivateKey(sk), nil
}

// EncodePublicKey encodes pub as standard base64 of the raw 32 bytes.
func EncodePublicKey(pub ed25519.PublicKey) string {
	return base64.StdEncoding.EncodeToString(pub)
}

// EncodePrivateKey encodes priv as standard base64 of the raw 64 bytes.
func EncodePrivateKey(priv ed25519.PrivateKey) string {
	return base64.StdEncoding.EncodeToString(priv)
}

// KeyID is the id (the kid header) of tokens signed by the key matching pub:
// its RFC 7638 JWK thumbprint. Derived from the key, it needs no setting of
// its own, cannot be paired with the wrong key, and is the same whatever
// encoding the key was configured in; JOSE tools compute the same value.
func KeyID(pub ed25519.PublicKey) string {
	// RFC 7638 §3.2: the required members in lexicographic order, no spaces.
	jwk := `{"crv":"Ed25519","kty":"OKP","x":"` + base64.RawURLEncoding.EncodeToString(pub) + `"}`
	sum := sha256.Sum256([]byte(jwk))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// ParsePublicKeys parses one or more public keys, each as ParsePublicKey
// accepts it: base64 keys separated by commas or white space, PEM blocks
// one after the other, or a mix. Several keys let services accept the
// tokens of the current signing key and of the one before it while the key
// is rotated. A key listed twice counts once.
func ParsePublicKeys(s string) ([]ed25519.PublicKey, error) {
	var keys []ed25519.PublicKey
	rest := s
	for n := 1; ; n++ {
		rest = strings.TrimLeft(rest, ", \t\r\n")
		if rest == "" {
			break
		}
		var one string
		if strings.HasPrefix(rest, "-----BEGIN") {
			// A PEM block runs to the end of its END line.
			end := strings.Index(rest, "-----END")
			if end < 0 {
				return nil, fmt.Errorf("key %d: parse public key: invalid PEM", n)
			}
			eol := strings.IndexByte(rest[end:], '\n')
			if eol < 0 {
				eol = len(rest) - end
			}
			one, rest = rest[:end+eol], rest[end+eol:]
		} else {
			i := strings.IndexAny(rest, ", \t\r\n")
			if i < 0 {
				i = len(rest)
			}
			one, rest = rest[:i], rest[i:]
		}
		key, err := ParsePublicKey(one)
		if err != nil {
			return nil, fmt.Errorf("key %d: %w", n, err)
		}
		if !containsKey(keys, key) {
			keys = append(keys, key)
		}
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("parse public key: no key given")
	}
	return keys, nil
}

func containsKey(keys []ed25519.PublicKey, k ed25519.PublicKey) bool {
	for _, have := range keys {
		if have.Equal(k) {
			return true
		}
	}
	return false
}

// ParsePublicKey accepts standard base64 of the raw 32-byte key or a PEM
// "PUBLIC KEY" block (PKIX, as written by `openssl pkey -pubout`).
func ParsePublicKey(s string) (ed25519.PublicKey, error) {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "-----BEGIN") {
		block, _ := pem.Decode([]byte(s))
		if block == nil {
			return nil, fmt.Errorf("parse public key: invalid PEM")
		}
		key, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse public key: %w", err)
		}
		pub, ok := key.(ed25519.PublicKey)
		if !ok {
			return nil, fmt.Errorf("parse public key: PEM holds a %T, want an Ed25519 key", key)
		}
		return pub, nil
	}
	raw, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("parse public key: not base64 or PEM")
	}
	if len(raw) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("parse public key: %d bytes, want %d", len(raw), ed25519.PublicKeySize)
	}
	return ed25519.PublicKey(raw), nil
}

// ParsePrivateKey accepts standard base64 of the raw 64-byte key (or of its
// 32-byte seed) or a PEM "PRIVATE KEY" block (PKCS #8, as written by
// `openssl genpkey -algorithm ed25519`). Errors never echo key material.
func ParsePrivateKey(s string) (ed25519.PrivateKey, error) {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "-----BEGIN") {
		block, _ := pem.Decode([]byte(s))
		if block == nil {
			return nil, fmt.Errorf("parse private key: invalid PEM")
		}
		key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse private key: not a PKCS #8 key")
		}
		priv, ok := key.(ed25519.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("parse private key: PEM holds a %T, want an Ed25519 key", key)
		}
		return priv, nil
	}
	raw, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("parse private key: not base64 or PEM")
	}
	switch len(raw) {
	case ed25519.PrivateKeySize:
		priv := ed25519.PrivateKey(raw)
		// The raw form carries the public half too; a mismatch means a
		// corrupted or hand-assembled key that would sign unverifiable tokens.
		if !ed25519.NewKeyFromSeed(priv.Seed()).Public().(ed25519.PublicKey).Equal(priv.Public()) {
			return nil, fmt.Errorf("parse private key: public half does not match the seed")
		}
		return priv, nil
	case ed25519.SeedSize:
		return ed25519.NewKeyFromSeed(raw), nil
	default:
		return nil, fmt.Errorf("parse private key: %d bytes, want %d (or a %d-byte seed)", len(raw), ed25519.PrivateKeySize, ed25519.SeedSize)
	}
}
