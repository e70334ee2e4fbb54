package app

import (
	"context"
	"errors"
	"fmt"
	"strings"

	campaignv1 "github.com/retainhq/retain/proto/gen/go/retain/campaign/v1"
	"github.com/retainhq/retain/services/campaign/internal/domain"
)

// Templates looks up the notifier's templates for the caller of a use
// case (ctx carries the caller's credentials and so the tenant).
type Templates interface {
	// Missing returns the refs the notifier has no template for.
	Missing(ctx context.Context, refs []domain.TemplateRef) ([]domain.TemplateRef, error)
}

// SetTemplates makes Create and Update refuse a campaign that sends a
// template the notifier does not have.
func (e *Engine) SetTemplates(t Templates) { e.templates.Store(&t) }

// compile validates c: its definition, then (with Templates set) that the
// notifier has every template it sends, reporting all violations at once.
// A failed lookup is an error of its own: nothing is saved unchecked.
func (e *Engine) compile(ctx context.Context, c *campaignv1.Campaign) (*domain.Plan, error) {
	p, err := domain.Compile(c)
	var inv *domain.InvalidError
	if err != nil && !errors.As(err, &inv) {
		return nil, err
	}
	if t, ok := e.templates.Load().(*Templates); ok {
		missing, lerr := (*t).Missing(ctx, domain.TemplateRefs(c))
		if lerr != nil {
			return nil, lerr
		}
		for _, m := range missing {
			ch := strings.ToLower(strings.TrimPrefix(m.Channel.String(), "CHANNEL_"))
			inv = inv.With(domain.Violation{Field: m.Field,
				Description: fmt.Sprintf("the notifier has no %s template %q (retain templates list; retain templates apply -f FILE adds one)", ch, m.Key)})
		}
	}
	if inv != nil {
		return nil, inv
	}
	return p, nil
}
