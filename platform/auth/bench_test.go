package auth

import (
	"crypto/ed25519"
	"strings"
	"testing"
)

// BenchmarkVerify measures Verify against the raw ed25519.Verify it is built
// on (sub-benchmark "raw_ed25519"), so parsing overhead is visible.
func BenchmarkVerify(b *testing.B) {
	k := setup(b)
	tok := mustIssue(b, k.signer, Claims{Tenant: "shop", Scopes: []string{ScopeEventsWrite}})
	b.Run("verify", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := k.verifier.Verify(tok); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("raw_ed25519", func(b *testing.B) {
		i := strings.LastIndexByte(tok, '.')
		msg := []byte(tok[:i])
		sig, _ := b64.DecodeString(tok[i+1:])
		pub := k.signer.PublicKey()
		b.ReportAllocs()
		for b.Loop() {
			if !ed25519.Verify(pub, msg, sig) {
				b.Fatal("bad signature")
			}
		}
	})
}
