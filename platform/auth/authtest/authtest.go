// Package authtest gives tests a fresh token key pair, ready to sign and
// verify. It is a package of its own, not part of platform/testenv,
// because platform/auth's internal tests import testenv: testenv
// importing auth would be an import cycle.
package authtest

import (
	"testing"

	"github.com/retainhq/retain/platform/auth"
)

// KeyPair is a token key pair in the encodings the configuration uses
// (RETAIN_AUTH_PUBLIC_KEY, RETAIN_AUTH_PRIVATE_KEY), with a signer and a
// verifier made from them.
type KeyPair struct {
	Public, Private string
	Signer          *auth.Signer
	Verifier        *auth.Verifier
}

// Keys generates a new key pair; any failure stops the test, since no
// test can go on without keys.
func Keys(tb testing.TB) KeyPair {
	tb.Helper()
	pub, priv, err := auth.GenerateKeyPair()
	if err != nil {
		tb.Fatalf("generate token keys: %v", err)
	}
	signer, err := auth.NewSignerFromString(priv)
	if err != nil {
		tb.Fatalf("token signer: %v", err)
	}
	verifier, err := auth.NewVerifierFromString(pub)
	if err != nil {
		tb.Fatalf("token verifier: %v", err)
	}
	return KeyPair{Public: pub, Private: priv, Signer: signer, Verifier: verifier}
}
