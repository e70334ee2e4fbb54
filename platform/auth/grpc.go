package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// publicServices need no token: orchestrators probe health without
// credentials, and reflection only describes the schema (which is public in
// the repository anyway).
var publicServices = []string{
	"/grpc.health.v1.Health/",
	"/grpc.reflection.v1.ServerReflection/",
	"/grpc.reflection.v1alpha.ServerReflection/",
}

// IsPublicMethod reports whether fullMethod is served without a token.
func IsPublicMethod(fullMethod string) bool {
	for _, p := range publicServices {
		if strings.HasPrefix(fullMethod, p) {
			return true
		}
	}
	return false
}

// ValidateMethodScopes checks a fullMethod -> scope table: methods look like
// "/pkg.Service/Method" and every scope is known. Servers call it at start-up
// so a typo fails loudly instead of locking a method.
func ValidateMethodScopes(methodScopes map[string]string) error {
	var bad []string
	for m, s := range methodScopes {
		svc, method, ok := strings.Cut(strings.TrimPrefix(m, "/"), "/")
		if !strings.HasPrefix(m, "/") || !ok || svc == "" || method == "" || strings.Contains(method, "/") {
			bad = append(bad, fmt.Sprintf("%q is not a full method name like /pkg.Service/Method", m))
			continue
		}
		if !KnownScope(s) {
			bad = append(bad, fmt.Sprintf("%s requires unknown scope %q", m, s))
		}
	}
	if len(bad) == 0 {
		return nil
	}
	sort.Strings(bad)
	return fmt.Errorf("method scopes: %s", strings.Join(bad, "; "))
}

// authorize is shared by the unary and stream interceptors. Methods missing
// from methodScopes are refused: forgetting to list a new method must not
// open it.
func authorize(ctx context.Context, v *Verifier, methodScopes map[string]string, fullMethod string) (context.Context, error) {
	if IsPublicMethod(fullMethod) {
		return ctx, nil
	}
	token, err := bearerFromMetadata(ctx)
	if err != nil {
		return nil, status.Error(codes.Unauthenticated, err.Error())
	}
	claims, err := v.Verify(token)
	if err != nil {
		return nil, status.Error(codes.Unauthenticated, publicReason(err))
	}
	scope, ok := methodScopes[fullMethod]
	if !ok {
		return nil, status.Errorf(codes.PermissionDenied, "method %s is not open to any scope", fullMethod)
	}
	if !claims.HasScope(scope) {
		return nil, status.Errorf(codes.PermissionDenied, "token lacks scope %q", scope)
	}
	return ContextWithClaims(ctx, claims), nil
}

// UnaryServerInterceptor authenticates every call and requires the scope
// methodScopes names for its full method; health and reflection are public.
// Missing or invalid tokens give Unauthenticated, a missing scope (or an
// unlisted method) PermissionDenied.
func UnaryServerInterceptor(v *Verifier, methodScopes map[string]string) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		ctx, err := authorize(ctx, v, methodScopes, info.FullMethod)
		if err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

// StreamServerInterceptor is UnaryServerInterceptor for streaming calls.
func StreamServerInterceptor(v *Verifier, methodScopes map[string]string) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		ctx, err := authorize(ss.Context(), v, methodScopes, info.FullMethod)
		if err != nil {
			return err
		}
		return handler(srv, &claimsStream{ServerStream: ss, ctx: ctx})
	}
}

type claimsStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *claimsStream) Context() context.Context { return s.ctx }

func bearerFromMetadata(ctx context.Context) (string, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get("authorization")
	switch len(vals) {
	case 0:
		return "", ErrMissingToken
	case 1:
		return parseBearer(vals[0])
	default:
		return "", errors.New("more than one authorization header")
	}
}

// parseBearer extracts the token from "Bearer <token>" (scheme is
// case-insensitive per RFC 7235).
func parseBearer(h string) (string, error) {
	scheme, token, ok := strings.Cut(strings.TrimSpace(h), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", errors.New("authorization header must be \"Bearer <token>\"")
	}
	token = strings.TrimSpace(token)
	if token == "" {
		return "", ErrMissingToken
	}
	return token, nil
}

// publicReason is what a caller is told about a rejected token: the kind of
// failure (expired, bad signature...) without echoing any part of the token.
func publicReason(err error) string {
	for _, known := range []error{ErrMissingToken, ErrExpired, ErrRevoked, ErrNotYetValid, ErrUnknownKey, ErrBadSignature, ErrBadTenant, ErrMalformed} {
		if errors.Is(err, known) {
			return "invalid token: " + known.Error()
		}
	}
	return "invalid token"
}

// BearerCredentials attaches "authorization: Bearer <token>" to every call of
// a gRPC client (grpc.WithPerRPCCredentials). RequireTLS false allows
// plaintext connections for local development; set it for anything crossing
// a network you do not own.
type BearerCredentials struct {
	Token      string
	RequireTLS bool
}

// GetRequestMetadata implements credentials.PerRPCCredentials.
func (b BearerCredentials) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	if b.Token == "" {
		return nil, errors.New("bearer credentials: empty token")
	}
	return map[string]string{"authorization": "Bearer " + b.Token}, nil
}

// RequireTransportSecurity implements credentials.PerRPCCredentials.
func (b BearerCredentials) RequireTransportSecurity() bool { return b.RequireTLS }

// String keeps the token out of logs and %v output.
func (b BearerCredentials) String() string { return "BearerCredentials{Token:REDACTED}" }

// GoString keeps the token out of %#v output.
func (b BearerCredentials) GoString() string { return b.String() }

// LogValue keeps the token out of slog output.
func (b BearerCredentials) LogValue() slog.Value { return slog.StringValue(b.String()) }

// TenantFromContext is the caller's tenant for a gRPC handler: from the
// verified token only, never from the request. Without one it is
// UNAUTHENTICATED (the interceptor normally refuses such calls earlier).
func TenantFromContext(ctx context.Context) (string, error) {
	c, ok := ClaimsFromContext(ctx)
	if !ok || c.Tenant == "" {
		return "", status.Error(codes.Unauthenticated, "missing credentials")
	}
	return c.Tenant, nil
}
