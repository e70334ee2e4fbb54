package server_test

import (
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	notifierv1 "github.com/retainhq/retain/proto/gen/go/retain/notifier/v1"
	opsv1 "github.com/retainhq/retain/proto/gen/go/retain/ops/v1"

	"github.com/retainhq/retain/platform/server"
)

type pagedRequest interface {
	proto.Message
	GetPageToken() string
}

type testCursor struct {
	At time.Time `json:"t"`
	ID string    `json:"id"`
}

func TestPageToken(t *testing.T) {
	at := time.Date(2026, 11, 25, 10, 0, 0, 123456000, time.UTC)
	first := &opsv1.ListDeadLettersRequest{Consumer: "metrics-facts", PageSize: 10}
	tok, err := server.NextPageToken(first, testCursor{At: at, ID: "c-1"})
	if err != nil {
		t.Fatal(err)
	}

	t.Run("continues its own query, page_size aside", func(t *testing.T) {
		var c testCursor
		ok, v := server.PageCursor(&opsv1.ListDeadLettersRequest{Consumer: "metrics-facts", PageSize: 50, PageToken: tok}, &c)
		if !ok || v != nil || !c.At.Equal(at) || c.ID != "c-1" {
			t.Fatalf("PageCursor = %v, %+v, cursor %+v", ok, v, c)
		}
	})

	t.Run("an id holding the text \\u0000 continues", func(t *testing.T) {
		odd, err := server.NextPageToken(first, testCursor{At: at, ID: `b\u0000`})
		if err != nil {
			t.Fatal(err)
		}
		var c testCursor
		if ok, v := server.PageCursor(&opsv1.ListDeadLettersRequest{Consumer: "metrics-facts", PageToken: odd}, &c); !ok || v != nil || c.ID != `b\u0000` {
			t.Fatalf("PageCursor = %v, %+v, cursor %+v", ok, v, c)
		}
	})

	t.Run("no token is the first page", func(t *testing.T) {
		ok, v := server.PageCursor(&opsv1.ListDeadLettersRequest{Consumer: "metrics-facts"}, &testCursor{})
		if ok || v != nil {
			t.Fatalf("PageCursor = %v, %+v", ok, v)
		}
	})

	mustRefuse := func(t *testing.T, req pagedRequest, cursor any, want string) {
		t.Helper()
		ok, v := server.PageCursor(req, cursor)
		if ok || v == nil || v.Field != "page_token" || !strings.Contains(v.Description, want) {
			t.Fatalf("PageCursor(%q) = %v, %+v; want a page_token violation saying %q", req.GetPageToken(), ok, v, want)
		}
	}

	t.Run("another query is named", func(t *testing.T) {
		mustRefuse(t, &opsv1.ListDeadLettersRequest{Consumer: "campaign-facts", PageToken: tok}, &testCursor{}, "was returned for another consumer:")
		mustRefuse(t, &opsv1.ListDeadLettersRequest{Consumer: "metrics-facts", IncludeReplayed: true, PageToken: tok}, &testCursor{}, "another include_replayed:")
		mustRefuse(t, &opsv1.ListDeadLettersRequest{IncludeReplayed: true, PageToken: tok}, &testCursor{}, "another consumer, include_replayed:")
		mustRefuse(t, &notifierv1.ListSuppressionsRequest{PageToken: tok}, &testCursor{}, "returned by another method")
	})

	t.Run("malformed", func(t *testing.T) {
		body := func(b string) string { return base64.RawURLEncoding.EncodeToString([]byte(b)) }
		good, _ := base64.RawURLEncoding.DecodeString(tok)
		jsonAt := strings.Index(string(good), "{")
		frame, cursor := string(good[:jsonAt]), string(good[jsonAt:])
		for name, bad := range map[string]string{
			"garbage":          "garbage",
			"not base64":       "r:500",
			"truncated":        body(string(good[:3])),
			"no cursor":        body(frame),
			"unknown field":    body(frame + `{"t":"2026-11-25T10:00:00Z","id":"c-1","rank":500}`),
			"wrong type":       body(frame + `{"t":5,"id":"c-1"}`),
			"trailing data":    body(frame + cursor + `{}`),
			"NUL in position":  body(frame + `{"t":"2026-11-25T10:00:00Z","id":"c\u00001"}`),
			"fields unordered": body(string(good[:5]) + "\x02\x02abcdef\x01abcdef" + cursor),
		} {
			t.Run(name, func(t *testing.T) {
				mustRefuse(t, &opsv1.ListDeadLettersRequest{Consumer: "metrics-facts", PageToken: bad}, &testCursor{}, "is malformed")
			})
		}
		mustRefuse(t, &opsv1.ListDeadLettersRequest{Consumer: "metrics-facts", PageToken: body("\x02" + string(good[1:]))}, &testCursor{}, "unknown version")
	})
}

// FuzzPageCursor: no token, however made, panics the decoder; one it
// accepts is for this query.
func FuzzPageCursor(f *testing.F) {
	req := &opsv1.ListDeadLettersRequest{Consumer: "c"}
	tok, err := server.NextPageToken(req, testCursor{ID: "x"})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(tok)
	f.Add("garbage")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		var c testCursor
		ok, v := server.PageCursor(&opsv1.ListDeadLettersRequest{Consumer: "c", PageToken: s}, &c)
		if ok && v != nil || s != "" && !ok && v == nil {
			t.Fatalf("PageCursor(%q) = %v, %+v", s, ok, v)
		}
		if strings.ContainsRune(c.ID, 0) && ok {
			t.Fatalf("PageCursor(%q) accepted a NUL", s)
		}
	})
}
