package api

import (
	"errors"
	"html/template"
	"log/slog"
	"net/http"

	"github.com/retainhq/retain/services/notifier/internal/app"
	"github.com/retainhq/retain/services/notifier/internal/unsub"
)

var page = template.Must(template.New("unsubscribe").Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>Unsubscribe</title></head>
<body style="font-family: sans-serif; max-width: 32em; margin: 3em auto">
{{if .Done}}<p>You are unsubscribed. You will not receive these messages any more.</p>
{{else if .Bad}}<p>This unsubscribe link is not valid. Please use the link from the most recent message.</p>
{{else}}<form method="post"><input type="hidden" name="t" value="{{.Token}}">
<p>Unsubscribe from these messages?</p><button type="submit">Unsubscribe</button></form>{{end}}
</body></html>
`))

// Unsubscribe serves the links in messages. GET shows a confirmation page
// and changes nothing (mail scanners follow links); POST unsubscribes: the
// form's button, or a mail client's RFC 8058 one-click request
// ("List-Unsubscribe=One-Click" in the body, token in the URL).
func Unsubscribe(e *app.Engine, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		switch r.Method {
		case http.MethodGet:
			tok := r.URL.Query().Get("t")
			_ = page.Execute(w, map[string]any{"Token": tok, "Bad": tok == ""})
		case http.MethodPost:
			r.Body = http.MaxBytesReader(w, r.Body, 4096)
			if err := r.ParseForm(); err != nil {
				w.WriteHeader(http.StatusBadRequest)
				_ = page.Execute(w, map[string]any{"Bad": true})
				return
			}
			source := "link"
			if r.PostForm.Get("List-Unsubscribe") == "One-Click" {
				source = "one_click"
			}
			tok := r.PostForm.Get("t")
			if tok == "" {
				tok = r.URL.Query().Get("t")
			}
			if _, err := e.UnsubscribeToken(r.Context(), tok, source); err != nil {
				if errors.Is(err, unsub.ErrInvalid) {
					w.WriteHeader(http.StatusBadRequest)
					_ = page.Execute(w, map[string]any{"Bad": true})
					return
				}
				log.Warn("unsubscribe failed", "error", err)
				w.WriteHeader(http.StatusServiceUnavailable)
				return
			}
			_ = page.Execute(w, map[string]any{"Done": true})
		default:
			w.Header().Set("Allow", "GET, POST")
			w.WriteHeader(http.StatusMethodNotAllowed)
		}
	})
}
