package channel

import (
	"strings"
	"testing"
	"time"
)

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Duration{
		"":                              0,
		"120":                           2 * time.Minute,
		"-5":                            0,
		"soon":                          0,
		"Thu, 01 Jan 2026 00:00:30 GMT": 30 * time.Second,
		"999999":                        24 * time.Hour,
	} {
		if got := RetryAfter(in, now); got != want {
			t.Errorf("%q: %s, want %s", in, got, want)
		}
	}
}

func TestSignAndVerify(t *testing.T) {
	now := time.Unix(1767225600, 0)
	body := []byte(`{"a":1}`)
	h := Sign("secret", now, body)
	if !strings.HasPrefix(h, "t=1767225600,v1=") {
		t.Fatal(h)
	}
	if err := Verify("secret", h, body, now.Add(time.Minute), 5*time.Minute); err != nil {
		t.Fatal(err)
	}
	for name, err := range map[string]error{
		"wrong secret": Verify("other", h, body, now, 5*time.Minute),
		"changed body": Verify("secret", h, []byte(`{"a":2}`), now, 5*time.Minute),
		"replayed":     Verify("secret", h, body, now.Add(time.Hour), 5*time.Minute),
		"malformed":    Verify("secret", "v1=abc", body, now, 5*time.Minute),
	} {
		if err == nil {
			t.Errorf("%s verified", name)
		}
	}
}

func TestEmailIsDeterministicWithOneClickHeaders(t *testing.T) {
	m := &Message{Tenant: "shop", RequestID: "r/1", To: "a@example.com", Subject: "Sälj", Text: "hi", HTML: "<p>hi</p>",
		UnsubscribeURL: "https://x/v1/unsubscribe?t=a", UnsubscribePostURL: "https://x/v1/unsubscribe?t=a", RequestedAt: time.Unix(0, 0)}
	a, id := BuildEmail(m, "Shop <news@shop.example>")
	b, _ := BuildEmail(m, "Shop <news@shop.example>")
	if string(a) != string(b) || !strings.HasSuffix(id, "@shop.example>") {
		t.Fatal("email bytes differ between attempts")
	}
	for _, want := range []string{"List-Unsubscribe: <https://x/v1/unsubscribe?t=a>", "List-Unsubscribe-Post: List-Unsubscribe=One-Click", "Message-ID: " + id, "Subject: =?utf-8?q?"} {
		if !strings.Contains(string(a), want) {
			t.Errorf("missing %q", want)
		}
	}
}
