package channel

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"net/textproto"
	"strings"
	"time"
)

// MessageID is the deterministic Message-ID of a request: the same for every
// attempt, so that a resend after an unknown outcome can be recognised as
// the same message by the receiving side.
func MessageID(m *Message, domain string) string {
	sum := sha256.Sum256([]byte(m.IdempotencyKey()))
	return "<" + hex.EncodeToString(sum[:16]) + "@" + domain + ">"
}

// domainOf is the domain of an address (for Message-IDs).
func domainOf(from string) string {
	if a, err := mail.ParseAddress(from); err == nil {
		from = a.Address
	}
	if _, d, ok := strings.Cut(from, "@"); ok && d != "" {
		return d
	}
	return "retain.invalid"
}

// BuildEmail writes m as an RFC 5322 message: multipart/alternative with
// text and HTML (quoted-printable UTF-8), a deterministic Message-ID and
// boundary (the same bytes on every attempt), and List-Unsubscribe with
// one-click List-Unsubscribe-Post (RFC 8058) when the message has a link.
func BuildEmail(m *Message, from string) ([]byte, string) {
	id := MessageID(m, domainOf(from))
	var b bytes.Buffer
	h := func(k, v string) { fmt.Fprintf(&b, "%s: %s\r\n", k, v) }
	h("From", from)
	h("To", (&mail.Address{Address: m.To}).String())
	h("Subject", mime.QEncoding.Encode("utf-8", m.Subject))
	h("Date", m.RequestedAt.UTC().Format(time.RFC1123Z))
	h("Message-ID", id)
	h("MIME-Version", "1.0")
	h("X-Retain-Request-Id", mime.QEncoding.Encode("utf-8", m.IdempotencyKey()))
	if m.UnsubscribeURL != "" {
		h("List-Unsubscribe", "<"+m.UnsubscribePostURL+">")
		h("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")
	}
	sum := sha256.Sum256([]byte(id))
	boundary := "retain-" + hex.EncodeToString(sum[:12])
	h("Content-Type", `multipart/alternative; boundary="`+boundary+`"`)
	b.WriteString("\r\n")
	mw := multipart.NewWriter(&b)
	_ = mw.SetBoundary(boundary) // valid by construction
	part := func(ctype, body string) {
		if body == "" {
			return
		}
		w, _ := mw.CreatePart(textproto.MIMEHeader{"Content-Type": {ctype + "; charset=utf-8"}, "Content-Transfer-Encoding": {"quoted-printable"}})
		qp := quotedprintable.NewWriter(w)
		_, _ = qp.Write([]byte(strings.ReplaceAll(body, "\r\n", "\n")))
		_ = qp.Close()
	}
	part("text/plain", m.Text)
	part("text/html", m.HTML)
	_ = mw.Close()
	return b.Bytes(), id
}

func parseAddr(s string) (string, error) {
	a, err := mail.ParseAddress(s)
	if err != nil {
		return "", err
	}
	return a.Address, nil
}
