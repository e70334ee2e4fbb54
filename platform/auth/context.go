package auth

import "context"

type claimsKey struct{}

// ContextWithClaims returns ctx carrying the caller's verified claims.
func ContextWithClaims(ctx context.Context, c Claims) context.Context {
	return context.WithValue(ctx, claimsKey{}, c)
}

// ClaimsFromContext returns the claims stored by the auth interceptors or
// middleware. Handlers scope every query to Claims.Tenant, never to a tenant
// named in the request.
func ClaimsFromContext(ctx context.Context) (Claims, bool) {
	c, ok := ctx.Value(claimsKey{}).(Claims)
	return c, ok
}
