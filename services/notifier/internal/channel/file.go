package channel

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// File is the development outbox: each message becomes a file a person can
// open (.eml for email, .sms.txt, .webhook.json) under Dir/<tenant>/. The
// name derives from the request, so a retry rewrites the same file: one
// file per request.
type File struct {
	Dir  string
	From string
}

// Path is where the message of a request is written.
func (f *File) Path(m *Message, ext string) string {
	name := m.RequestedAt.UTC().Format("20060102T150405Z") + "-" + safeName(m.RequestID) + ext
	return filepath.Join(f.Dir, safeName(m.Tenant), name)
}

func safeName(s string) string {
	s = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' {
			return r
		}
		return '_'
	}, s)
	if len(s) > 150 {
		s = s[:150]
	}
	return strings.TrimLeft(s, ".")
}

// Email returns a sender writing .eml files.
func (f *File) Email() Sender { return fileSender{f, ".eml"} }

// SMS returns a sender writing .sms.txt files.
func (f *File) SMS() Sender { return fileSender{f, ".sms.txt"} }

// Webhook returns a sender writing .webhook.json files.
func (f *File) Webhook() Sender { return fileSender{f, ".webhook.json"} }

type fileSender struct {
	f   *File
	ext string
}

func (s fileSender) Send(_ context.Context, m *Message) (string, error) {
	var data []byte
	var id string
	switch s.ext {
	case ".eml":
		data, id = BuildEmail(m, s.f.From)
	case ".sms.txt":
		data = []byte("To: " + m.To + "\nRequest: " + m.IdempotencyKey() + "\n\n" + m.Body + "\n")
	default:
		var v any
		if err := json.Unmarshal([]byte(m.Body), &v); err != nil {
			return "", Permanent("provider_rejected", fmt.Errorf("webhook body: %w", err))
		}
		data, _ = json.MarshalIndent(map[string]any{"request_id": m.IdempotencyKey(), "body": v}, "", "  ")
	}
	path := s.f.Path(m, s.ext)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return "", Transient("provider_unavailable", fmt.Errorf("file outbox: %w", err))
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return "", Transient("provider_unavailable", fmt.Errorf("file outbox: %w", err))
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", Transient("provider_unavailable", fmt.Errorf("file outbox: %w", err))
	}
	if id == "" {
		id = path
	}
	return id, nil
}
