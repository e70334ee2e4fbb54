package channel

import (
	"bytes"
	"cmp"
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// A provider's error answer becomes part of the delivery's reason, which
// the shop reads (GetDelivery, ListDeliveries), and of the operator's log.
// Providers may echo what they refuse (the request's URL, its headers,
// the credential that did not work), so the reason says what the answer
// says in as few words as it can: the message and code of the provider's
// structured error when it has one, else a short excerpt, on one line,
// with anything credential-like blanked.

// Bounds of what a reason takes from an answer.
const (
	maxDetail = 200 // the provider's message or excerpt, in bytes
	maxCode   = 40  // the provider's error code, in bytes
)

// redacted stands for a blanked credential.
const redacted = "[redacted]"

// answerReason is what an HTTP provider's error answer says: its status
// with the status text, then the provider's error message and code from
// a JSON answer (errorDetail), or else an excerpt of the answer, each
// passed through scrub with the request's secrets.
func answerReason(status int, body []byte, secrets []string) string {
	head := "HTTP " + strconv.Itoa(status)
	if text := http.StatusText(status); text != "" {
		head += " " + text
	}
	code, msg, structured := errorDetail(body)
	if !structured {
		msg = string(body)
		// A JSON answer without the fields looked for is shown as it
		// decodes, so that an echo JSON escaped (\/, \u0041) is still
		// recognised.
		var v any
		if json.Unmarshal(body, &v) == nil {
			var b bytes.Buffer
			enc := json.NewEncoder(&b)
			enc.SetEscapeHTML(false)
			if enc.Encode(v) == nil {
				msg = b.String()
			}
		}
	}
	msg = bounded(scrub(msg, secrets), maxDetail)
	code = bounded(scrub(code, secrets), maxCode)
	switch {
	case msg == "" && code == "":
		return head
	case code == "":
		return head + ": " + msg
	case msg == "":
		return head + ": code " + code
	}
	return head + ": " + msg + " (code " + code + ")"
}

// Where documented JSON error answers put their message and code, in the
// order looked at: {"code": 21211, "message": ...} (Twilio and most
// REST APIs), {"type", "title", "detail"} (RFC 9457 problem details,
// Vonage), {"errors": [{"code", "description"}]} (MessageBird),
// {"error": "..."} (Plivo), {"error": {"code", "message"}} (Google-style
// APIs), {"error": "invalid_client", "error_description": ...} (OAuth).
var (
	messageFields = []string{"message", "error_message", "errorMessage", "detail", "error_description", "description", "title"}
	codeFields    = []string{"code", "error_code", "errorCode"}
	nestedFields  = []string{"error", "errors"}
)

// errorDetail reads a provider's structured error from a JSON answer:
// structured is false when the answer is not JSON or has none of the
// fields looked for.
func errorDetail(body []byte) (code, msg string, structured bool) {
	d := json.NewDecoder(bytes.NewReader(body))
	d.UseNumber() // a code such as 21211 stays as written
	var v any
	if d.Decode(&v) != nil {
		return "", "", false
	}
	code, msg = detailOf(v, 0)
	return code, msg, code != "" || msg != ""
}

func detailOf(v any, depth int) (code, msg string) {
	if depth > 3 {
		return "", ""
	}
	switch x := v.(type) {
	case string:
		return "", x
	case []any:
		if len(x) > 0 {
			return detailOf(x[0], depth+1)
		}
	case map[string]any:
		msg = firstScalar(x, messageFields)
		code = firstScalar(x, codeFields)
		for _, f := range nestedFields {
			if code != "" && msg != "" {
				break
			}
			c, m := detailOf(x[f], depth+1)
			if _, isString := x[f].(string); isString && msg != "" {
				// {"error": "invalid_client", "error_description": ...}:
				// beside a message, a bare error string is a code.
				c, m = m, ""
			}
			code, msg = cmp.Or(code, c), cmp.Or(msg, m)
		}
	}
	return code, msg
}

// firstScalar is the first of fields that m has as a string or number.
func firstScalar(m map[string]any, fields []string) string {
	for _, f := range fields {
		switch v := m[f].(type) {
		case string:
			if v != "" {
				return v
			}
		case json.Number:
			return v.String()
		}
	}
	return ""
}

// requestSecrets are the parts of a request that may be credentials: the
// URL's userinfo, path segments and query values, and the headers' values
// (and the credential of "Bearer <token>" alone), as secretsOf keeps them.
func requestSecrets(rawURL string, header http.Header) []string {
	var all []string
	if u, err := url.Parse(rawURL); err == nil {
		if u.User != nil {
			p, _ := u.User.Password()
			all = append(all, u.User.Username(), p)
		}
		all = append(all, strings.Split(u.Path, "/")...)
		for _, vs := range u.Query() {
			all = append(all, vs...)
		}
	}
	for k, vs := range header {
		if k == "Content-Type" {
			continue
		}
		for _, v := range vs {
			all = append(all, v)
			if _, cred, ok := strings.Cut(v, " "); ok {
				all = append(all, cred)
			}
		}
	}
	return secretsOf(all...)
}

// secretsOf are the values of at least 8 bytes: shorter ones are words
// (a path's "v1", "send"), and blanking them would garble the answer.
func secretsOf(values ...string) []string {
	var secrets []string
	for _, v := range values {
		if len(v) >= 8 {
			secrets = append(secrets, v)
		}
	}
	return secrets
}

// Credential-like text, blanked whoever sent it.
var (
	// A URL is shown by its scheme and host (ShownURL).
	urlText = regexp.MustCompile(`(?i)\b[a-z][a-z0-9+.-]*://[^\s"'<>()\[\]{}]+`)
	// The credential of an Authorization value.
	authText = regexp.MustCompile(`(?i)\b(bearer|basic|digest)(\s+)[^\s"',;]{8,}`)
	// The value of a name that says it is secret: api_key=..., "token": ...,
	// password: ..., X-Auth-Signature: ...
	pairText = regexp.MustCompile(`(?i)([a-z0-9_.-]*(?:pass|secret|token|key|auth|credential|signature|session|cookie)[a-z0-9_.-]*["']?\s*[:=]\s*["']?)[^\s"',;&]+`)
	// A path of two segments or more (a URL's, without its host).
	pathText = regexp.MustCompile(`(^|[\s"'(=])/[^\s"'/]*/[^\s"']*`)
	// A run of 20 or more key or base64 characters with letters and digits:
	// an API key, a token, a signature.
	tokenText = regexp.MustCompile(`[A-Za-z0-9_\-+/=~]{20,}`)
)

// scrub makes provider text fit for a reason: the request's secrets
// blanked, on one line of printable characters, URLs by their host, and
// credential-like text blanked.
func scrub(s string, secrets []string) string {
	for _, sec := range secrets {
		s = strings.ReplaceAll(s, sec, redacted)
	}
	s = oneLine(s)
	s = urlText.ReplaceAllStringFunc(s, ShownURL)
	s = authText.ReplaceAllString(s, "${1}${2}"+redacted)
	s = pairText.ReplaceAllString(s, "${1}"+redacted)
	s = pathText.ReplaceAllString(s, "${1}[path]")
	return tokenText.ReplaceAllStringFunc(s, func(t string) string {
		if strings.ContainsAny(t, "0123456789") && strings.IndexFunc(t, unicode.IsLetter) >= 0 {
			return redacted
		}
		return t
	})
}

// oneLine is s with every run of spaces and control characters (line
// breaks, escapes) one space, other characters that do not print (bidi
// overrides, zero-width ones) dropped, and invalid UTF-8 replaced.
func oneLine(s string) string {
	var b strings.Builder
	gap := false
	for _, r := range strings.ToValidUTF8(s, "\uFFFD") {
		switch {
		case unicode.IsSpace(r) || unicode.IsControl(r):
			gap = true
		case unicode.IsPrint(r):
			if gap && b.Len() > 0 {
				b.WriteByte(' ')
			}
			gap = false
			b.WriteRune(r)
		}
	}
	return b.String()
}

// bounded is s cut to at most n bytes on a character boundary, marked
// with "..." when cut.
func bounded(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - len("...")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return strings.TrimRight(s[:cut], " ") + "..."
}
