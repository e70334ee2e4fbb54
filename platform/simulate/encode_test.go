package simulate

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	eventsv1 "github.com/retainhq/retain/proto/gen/go/retain/events/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// compactProtojson is protojson's output without the whitespace it randomly
// inserts (it does so on purpose, per binary, so nobody relies on its bytes).
func compactProtojson(t *testing.T, m proto.Message) []byte {
	t.Helper()
	raw, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(m)
	if err != nil {
		t.Fatalf("protojson: %v", err)
	}
	var out bytes.Buffer
	if err := json.Compact(&out, raw); err != nil {
		t.Fatalf("compact: %v", err)
	}
	return out.Bytes()
}

func TestNDJSONIsProtojson(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Customers = 1000
	cfg.SubscriptionShare = 0.5 // exercise traits often
	r := generate(t, cfg)

	if len(r.ndjson) == 0 || r.ndjson[len(r.ndjson)-1] != '\n' {
		t.Fatal("NDJSON must end with a newline")
	}
	lines := bytes.Split(r.ndjson[:len(r.ndjson)-1], []byte("\n"))
	if len(lines) != len(r.events) {
		t.Fatalf("%d lines for %d events", len(lines), len(r.events))
	}
	for i, line := range lines {
		want := compactProtojson(t, r.events[i])
		if !bytes.Equal(line, want) {
			t.Fatalf("line %d differs from protojson:\n got %s\nwant %s", i, line, want)
		}
		var back eventsv1.Event
		if err := protojson.Unmarshal(line, &back); err != nil {
			t.Fatalf("line %d does not parse as an Event: %v\n%s", i, err, line)
		}
		if !proto.Equal(&back, r.events[i]) {
			t.Fatalf("line %d parses to %v, want %v", i, &back, r.events[i])
		}
	}
}

func TestAppendTimestamp(t *testing.T) {
	times := []string{
		"1970-01-01T00:00:00Z",
		"1970-01-01T00:00:00.001Z",
		"1999-12-31T23:59:59.999Z",
		"2000-02-29T12:00:00.100Z",
		"2024-02-29T23:59:59.990Z",
		"2025-01-01T00:00:00Z",
		"2100-03-01T00:00:01Z",
		"9999-12-31T23:59:59.999Z",
	}
	for _, s := range times {
		t.Run(s, func(t *testing.T) {
			tm, err := time.Parse(time.RFC3339Nano, s)
			if err != nil {
				t.Fatal(err)
			}
			got := appendTimestamp(nil, tm.UnixMilli())
			want := compactProtojson(t, timestamppb.New(tm))
			if `"`+string(got)+`"` != string(want) {
				t.Fatalf("appendTimestamp = %s, protojson %s", got, want)
			}
		})
	}
}

func TestAppendString(t *testing.T) {
	texts := []string{
		"",
		"plain",
		`quote " and backslash \`,
		"new\nline\ttab\rreturn\bback\fform",
		"control \x01\x1f",
		"<html> & 'single'",
		"ليلى الشمري",
		"نیلوفر چگینی",
		"Éloïse Müller",
		"\u2028 line separator",
	}
	for _, s := range texts {
		t.Run(fmt.Sprintf("%q", s), func(t *testing.T) {
			got := appendString(nil, s)
			want := compactProtojson(t, &eventsv1.TicketResolved{Resolution: s})
			if s == "" {
				want = []byte(`{"resolution":""}`) // protojson omits empty fields
			}
			if `{"resolution":`+string(got)+`}` != string(want) {
				t.Fatalf("appendString = %s, protojson %s", got, want)
			}
			if bytes.ContainsAny(got, "\n\r") {
				t.Fatalf("raw line break in %s", got)
			}
		})
	}
}

func TestAppendPadded(t *testing.T) {
	tests := []struct {
		n     int64
		width int
		want  string
	}{
		{0, 0, "0"},
		{7, 6, "000007"},
		{123456, 6, "123456"},
		{1234567, 6, "1234567"},
		{10, 1, "10"},
		{9223372036854775807, 3, "9223372036854775807"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := string(appendPadded(nil, tt.n, tt.width)); got != tt.want {
				t.Fatalf("appendPadded(%d, %d) = %s", tt.n, tt.width, got)
			}
		})
	}
}

// failingWriter accepts limit bytes, then fails.
type failingWriter struct {
	limit int
	err   error
}

func (w *failingWriter) Write(p []byte) (int, error) {
	if len(p) > w.limit {
		n := w.limit
		w.limit = 0
		return n, w.err
	}
	w.limit -= len(p)
	return len(p), nil
}

func TestWriteNDJSONReportsWriteErrors(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Customers = 5000 // more than one buffer of output
	shop, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	broken := errors.New("disk full")
	tests := []struct {
		name  string
		limit int
	}{
		{"fails on the first write", 0},
		{"fails after the first buffer", 300 << 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := &failingWriter{limit: tt.limit, err: broken}
			n, err := WriteNDJSON(w, shop)
			if !errors.Is(err, broken) || !strings.Contains(err.Error(), "write simulated events") {
				t.Fatalf("WriteNDJSON = %v, want the wrapped write error", err)
			}
			if n < 0 || n >= shop.Stats().Events {
				t.Fatalf("WriteNDJSON reported %d events written before failing", n)
			}
		})
	}
}
