package httperr

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestWrite(t *testing.T) {
	rec := httptest.NewRecorder()
	Write(rec, http.StatusMethodNotAllowed, "method_not_allowed", `GET is not allowed: POST "/v1/events"`)
	if rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Content-Type") != "application/json" || rec.Header().Get("Cache-Control") != "no-store" {
		t.Fatalf("status %d, headers %v", rec.Code, rec.Header())
	}
	if got, want := rec.Body.String(), `{"error":{"code":"method_not_allowed","message":"GET is not allowed: POST \"/v1/events\""}}`+"\n"; got != want {
		t.Fatalf("body %s, want %s", got, want)
	}
}
