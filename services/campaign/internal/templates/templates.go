// Package templates looks up a campaign's templates in the notifier over
// its gRPC API, as the caller of the campaign service: the caller's
// bearer token goes with each lookup, so the notifier answers for the
// caller's tenant and scopes.
package templates

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	notifierv1 "github.com/retainhq/retain/proto/gen/go/retain/notifier/v1"

	"github.com/retainhq/retain/platform/server"
	"github.com/retainhq/retain/services/campaign/internal/domain"
)

// Notifier is the notifier's NotifierService at one address.
type Notifier struct {
	addr   string
	conn   *grpc.ClientConn
	client notifierv1.NotifierServiceClient
}

// Dial prepares a client of the notifier at addr (host:port), over TLS
// as tls says; it connects on the first lookup. The caller's token goes
// with each lookup, so outside one process TLS keeps it off the network
// in plaintext.
func Dial(addr string, tls server.ClientTLS) (*Notifier, error) {
	creds, err := tls.TransportCredentials()
	if err != nil {
		return nil, fmt.Errorf("notifier at %s: %w", addr, err)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return nil, fmt.Errorf("notifier at %s: %w", addr, err)
	}
	return &Notifier{addr: addr, conn: conn, client: notifierv1.NewNotifierServiceClient(conn)}, nil
}

// Close closes the connection.
func (n *Notifier) Close() error { return n.conn.Close() }

// lookupTimeout bounds the lookups of one save: a notifier that hangs
// refuses the save within it rather than holding the caller.
const lookupTimeout = 10 * time.Second

// Missing returns the refs the notifier has no template for. A lookup the
// notifier refuses to answer is an error that says why, as a gRPC status.
func (n *Notifier) Missing(parent context.Context, refs []domain.TemplateRef) ([]domain.TemplateRef, error) {
	in, _ := metadata.FromIncomingContext(parent)
	ctx, cancel := context.WithTimeout(metadata.NewOutgoingContext(parent, metadata.MD{"authorization": in.Get("authorization")}), lookupTimeout)
	defer cancel()
	type key struct {
		ch  notifierv1.Channel
		key string
	}
	found := map[key]bool{}
	var missing []domain.TemplateRef
	for _, r := range refs {
		k := key{r.Channel, r.Key}
		ok, seen := found[k]
		if !seen {
			_, err := n.client.GetTemplate(ctx, &notifierv1.GetTemplateRequest{Key: r.Key, Channel: r.Channel})
			switch status.Code(err) {
			case codes.OK:
				ok = true
			case codes.NotFound:
			case codes.PermissionDenied, codes.Unauthenticated:
				return nil, status.Errorf(codes.PermissionDenied, "checking the campaign's templates in the notifier needs the read scope as well: %s", status.Convert(err).Message())
			case codes.Canceled, codes.DeadlineExceeded:
				if parent.Err() != nil {
					return nil, err // the caller gave up
				}
				return nil, status.Errorf(codes.Unavailable, "the notifier at %s did not answer the campaign's template lookup within %s (nothing was saved)", n.addr, lookupTimeout)
			default:
				return nil, status.Errorf(codes.Unavailable, "cannot check the campaign's templates in the notifier at %s (nothing was saved): %s", n.addr, status.Convert(err).Message())
			}
			found[k] = ok
		}
		if !ok {
			missing = append(missing, r)
		}
	}
	return missing, nil
}
