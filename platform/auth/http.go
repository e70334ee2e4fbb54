package auth

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/retainhq/retain/platform/httperr"
)

// RequireScope returns HTTP middleware that verifies the
// "Authorization: Bearer <token>" header and requires scope. It answers 401
// with a WWW-Authenticate challenge when the token is missing or invalid, 403
// when it lacks the scope, both with a JSON body
// {"error":{"code":"...","message":"..."}}. On success the claims are in the
// request context (ClaimsFromContext).
func RequireScope(v *Verifier, scope string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			vals := r.Header.Values("Authorization")
			var token string
			var err error
			switch len(vals) {
			case 0:
				err = ErrMissingToken
			case 1:
				token, err = parseBearer(vals[0])
			default:
				err = errors.New("more than one authorization header")
			}
			if err != nil {
				// RFC 6750: no error code when credentials are simply absent.
				challenge := `Bearer realm="retain"`
				if !errors.Is(err, ErrMissingToken) {
					challenge = `Bearer realm="retain", error="invalid_request"`
				}
				w.Header().Set("WWW-Authenticate", challenge)
				httperr.Write(w, http.StatusUnauthorized, "unauthenticated", err.Error())
				return
			}
			claims, err := v.Verify(token)
			if err != nil {
				w.Header().Set("WWW-Authenticate", `Bearer realm="retain", error="invalid_token"`)
				httperr.Write(w, http.StatusUnauthorized, "unauthenticated", publicReason(err))
				return
			}
			if !claims.HasScope(scope) {
				w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="retain", error="insufficient_scope", scope=%q`, scope))
				httperr.Write(w, http.StatusForbidden, "permission_denied", fmt.Sprintf("token lacks scope %q", scope))
				return
			}
			next.ServeHTTP(w, r.WithContext(ContextWithClaims(r.Context(), claims)))
		})
	}
}
