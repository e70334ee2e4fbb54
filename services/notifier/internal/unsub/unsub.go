// Package unsub signs and verifies the tokens of unsubscribe links. A token
// names the tenant, customer, channel and the message it came in; it is an
// HMAC-SHA256 over those, so nobody can unsubscribe someone else, and it
// never expires (people click links in old mail).
package unsub

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"

	notifierv1 "github.com/retainhq/retain/proto/gen/go/retain/notifier/v1"
)

// Claim is what a link unsubscribes.
type Claim struct {
	Tenant, Customer string
	Channel          notifierv1.Channel
	RequestID        string
}

// ErrInvalid is any token that does not verify.
var ErrInvalid = errors.New("invalid unsubscribe token")

const version = "1"

// maxToken bounds what Parse looks at.
const maxToken = 2048

var b64 = base64.RawURLEncoding.Strict()

// Sign returns the token for c.
func Sign(key []byte, c Claim) string {
	payload := strings.Join([]string{version, c.Tenant, c.Customer, strconv.Itoa(int(c.Channel)), c.RequestID}, "\x00")
	return b64.EncodeToString([]byte(payload)) + "." + b64.EncodeToString(mac(key, payload))
}

func mac(key []byte, payload string) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(payload))
	return h.Sum(nil)
}

// Parse verifies tok and returns its claim.
func Parse(key []byte, tok string) (Claim, error) {
	if len(tok) > maxToken {
		return Claim{}, ErrInvalid
	}
	p, s, ok := strings.Cut(tok, ".")
	if !ok {
		return Claim{}, ErrInvalid
	}
	payload, err := b64.DecodeString(p)
	if err != nil {
		return Claim{}, ErrInvalid
	}
	sig, err := b64.DecodeString(s)
	if err != nil || !hmac.Equal(sig, mac(key, string(payload))) {
		return Claim{}, ErrInvalid
	}
	parts := strings.Split(string(payload), "\x00")
	if len(parts) != 5 || parts[0] != version || parts[1] == "" || parts[2] == "" {
		return Claim{}, ErrInvalid
	}
	ch, err := strconv.Atoi(parts[3])
	if err != nil || (notifierv1.Channel(ch) != notifierv1.Channel_CHANNEL_EMAIL && notifierv1.Channel(ch) != notifierv1.Channel_CHANNEL_SMS) {
		return Claim{}, ErrInvalid
	}
	return Claim{Tenant: parts[1], Customer: parts[2], Channel: notifierv1.Channel(ch), RequestID: parts[4]}, nil
}
