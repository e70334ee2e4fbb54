package app

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/oklog/ulid/v2"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/retainhq/retain/platform/pg"
	notifierv1 "github.com/retainhq/retain/proto/gen/go/retain/notifier/v1"
	"github.com/retainhq/retain/services/notifier/internal/policy"
	"github.com/retainhq/retain/services/notifier/internal/render"
	"github.com/retainhq/retain/services/notifier/internal/store"
	"github.com/retainhq/retain/services/notifier/internal/unsub"
	"github.com/retainhq/retain/services/notifier/templatefile"
)

// InvalidError is a template that does not compile.
type InvalidError struct{ Violations []render.Violation }

func (e *InvalidError) Error() string {
	return fmt.Sprintf("invalid template: %s: %s", e.Violations[0].Field, e.Violations[0].Description)
}

// SaveTemplate validates t and stores it as a new template (create) or
// the next version of an existing one, unless it equals that template's
// latest version: then it stores nothing and reports changed false, so
// that applying the same file twice leaves one version.
func (e *Engine) SaveTemplate(ctx context.Context, tenant string, t *notifierv1.Template, create bool) (_ *notifierv1.Template, changed bool, err error) {
	if err := compileTemplate(t); err != nil {
		return nil, false, err
	}
	if err := e.EnsureDefaults(ctx, tenant); err != nil {
		return nil, false, err
	}
	if !create {
		latest, err := store.GetTemplate(ctx, e.pool, tenant, t.GetKey(), t.GetChannel(), 0)
		if err == nil && sameTemplate(latest, t) {
			return latest, false, nil
		}
	}
	saved, err := store.InsertTemplate(ctx, e.pool, tenant, t, create, e.now())
	return saved, err == nil, err
}

// CheckTemplate refuses what SaveTemplate would: a template that does not
// compile (every violation, naming its field), then a create of a template
// that exists or an update of one that does not. It stores nothing, so a
// client can check every template of a file before saving any; a save
// made between the check and the client's own can still refuse it.
func (e *Engine) CheckTemplate(ctx context.Context, tenant string, t *notifierv1.Template, create bool) error {
	if err := compileTemplate(t); err != nil {
		return err
	}
	_, err := e.GetTemplate(ctx, tenant, t.GetKey(), t.GetChannel(), 0)
	switch {
	case create && err == nil:
		return fmt.Errorf("template %q (%s): %w", t.GetKey(), templatefile.ChannelName(t.GetChannel()), store.ErrExists)
	case create && errors.Is(err, store.ErrNotFound), err == nil:
		return nil
	}
	return err
}

// compileTemplate is the check of a template's content that a save makes.
func compileTemplate(t *notifierv1.Template) error {
	if _, vs := render.Compile(t); vs != nil {
		return &InvalidError{Violations: vs}
	}
	return nil
}

// sameTemplate reports whether two templates say the same, whatever their
// versions and save times.
func sameTemplate(a, b *notifierv1.Template) bool {
	def := func(t *notifierv1.Template) *notifierv1.Template {
		return &notifierv1.Template{Key: t.GetKey(), Channel: t.GetChannel(), Description: t.GetDescription(), Variables: t.GetVariables(), Variants: t.GetVariants()}
	}
	return proto.Equal(def(a), def(b))
}

// GetTemplate returns a template version (0: latest).
func (e *Engine) GetTemplate(ctx context.Context, tenant, key string, ch notifierv1.Channel, version int32) (*notifierv1.Template, error) {
	if err := e.EnsureDefaults(ctx, tenant); err != nil {
		return nil, err
	}
	return store.GetTemplate(ctx, e.pool, tenant, key, ch, version)
}

// ListTemplates returns the latest version of every template.
func (e *Engine) ListTemplates(ctx context.Context, tenant string, ch notifierv1.Channel) ([]*notifierv1.Template, error) {
	if err := e.EnsureDefaults(ctx, tenant); err != nil {
		return nil, err
	}
	return store.ListTemplates(ctx, e.pool, tenant, ch)
}

// Preview renders t for a locale and variables as a send would.
func (e *Engine) Preview(t *notifierv1.Template, in render.Input) (render.Message, error) {
	c, vs := render.Compile(t)
	if vs != nil {
		return render.Message{}, &InvalidError{Violations: vs}
	}
	if in.UnsubscribeURL == "" {
		in.UnsubscribeURL = e.cfg.PublicURL + UnsubscribePath + "?t=preview"
	}
	return c.Render(in)
}

// Zone resolves a time zone name with the default.
func (e *Engine) Zone(name string) *time.Location { return e.zone(name) }

// Preferences is a customer's effective choices.
type Preferences struct {
	Contact store.Contact
	Prefs   []*notifierv1.ChannelPreference
}

// GetPreferences returns the effective state of every customer channel and
// category, and where it comes from.
func (e *Engine) GetPreferences(ctx context.Context, tenant, customer string) (Preferences, error) {
	k := store.Key{Tenant: tenant, Customer: customer}
	cs, err := store.LoadContacts(ctx, e.pool, []store.Key{k})
	if err != nil {
		return Preferences{}, err
	}
	prefs, err := store.LoadPrefs(ctx, e.pool, []store.Key{k})
	if err != nil {
		return Preferences{}, err
	}
	c := cs[k]
	out := Preferences{Contact: c}
	for _, ch := range []notifierv1.Channel{notifierv1.Channel_CHANNEL_EMAIL, notifierv1.Channel_CHANNEL_SMS} {
		for _, cat := range []notifierv1.Category{notifierv1.Category_CATEGORY_TRANSACTIONAL, notifierv1.Category_CATEGORY_MARKETING} {
			cp := &notifierv1.ChannelPreference{Channel: ch, Category: cat, Subscribed: cat == notifierv1.Category_CATEGORY_TRANSACTIONAL, Source: "default"}
			consent, at := c.EmailConsent, c.EmailConsentAt
			if ch == notifierv1.Channel_CHANNEL_SMS {
				consent, at = c.SMSConsent, c.SMSConsentAt
			}
			if cat == notifierv1.Category_CATEGORY_MARKETING && consent != "" {
				cp.Subscribed, cp.Source, cp.UpdatedAt = consent == policy.ConsentGranted, "shop", timestamppb.New(at)
			}
			if p, ok := prefs[store.PrefKey{Key: k, Channel: ch, Category: cat}]; ok && (cp.UpdatedAt == nil || !p.At.Before(at)) {
				cp.Subscribed, cp.Source, cp.UpdatedAt = p.Subscribed, p.Source, timestamppb.New(p.At)
			}
			out.Prefs = append(out.Prefs, cp)
		}
	}
	return out, nil
}

// Contact returns what the notifier knows of a customer (from
// customer.updated); store.ErrNotFound when nothing.
func (e *Engine) Contact(ctx context.Context, tenant, customer string) (store.Contact, error) {
	k := store.Key{Tenant: tenant, Customer: customer}
	cs, err := store.LoadContacts(ctx, e.pool, []store.Key{k})
	if err != nil {
		return store.Contact{}, err
	}
	c := cs[k]
	if !c.Known {
		return c, fmt.Errorf("customer %q: %w (the notifier learns customers from customer.updated events)", customer, store.ErrNotFound)
	}
	return c, nil
}

// SetPreferences stores a customer's choices (source "api" unless given).
func (e *Engine) SetPreferences(ctx context.Context, tenant, customer string, ps []*notifierv1.ChannelPreference, source, requestID string) error {
	now := e.now()
	// One order for every call: two calls for one customer listing the
	// same channels in different orders (an unsubscribe link's and an
	// API's) would otherwise each hold a row the other waits for.
	ps = slices.Clone(ps)
	slices.SortStableFunc(ps, func(a, b *notifierv1.ChannelPreference) int {
		return cmp.Or(cmp.Compare(a.GetChannel(), b.GetChannel()), cmp.Compare(a.GetCategory(), b.GetCategory()))
	})
	return pg.InTx(ctx, e.pool, func(tx pgx.Tx) error {
		for _, p := range ps {
			src := p.GetSource()
			if src == "" {
				src = source
			}
			k := store.PrefKey{Key: store.Key{Tenant: tenant, Customer: customer}, Channel: p.GetChannel(), Category: p.GetCategory()}
			if err := store.SetPref(ctx, tx, k, policy.Pref{Subscribed: p.GetSubscribed(), At: now, Source: src}, requestID); err != nil {
				return err
			}
		}
		return nil
	})
}

// UnsubscribeToken applies a signed unsubscribe link: the link's channel,
// marketing category.
func (e *Engine) UnsubscribeToken(ctx context.Context, token, source string) (unsub.Claim, error) {
	c, err := unsub.Parse(e.cfg.UnsubscribeKey, token)
	if err != nil {
		return c, err
	}
	err = e.SetPreferences(ctx, c.Tenant, c.Customer, []*notifierv1.ChannelPreference{{Channel: c.Channel, Category: notifierv1.Category_CATEGORY_MARKETING}}, source, c.RequestID)
	return c, err
}

// AddSuppression lists an address.
func (e *Engine) AddSuppression(ctx context.Context, tenant string, s store.Suppression) (store.Suppression, error) {
	s.CreatedAt = e.now()
	s.Address = store.NormalizeAddress(s.Channel, s.Address)
	return s, store.AddSuppression(ctx, e.pool, tenant, s)
}

// RemoveSuppression unlists an address.
func (e *Engine) RemoveSuppression(ctx context.Context, tenant string, ch notifierv1.Channel, address string) (bool, error) {
	return store.RemoveSuppression(ctx, e.pool, tenant, ch, address)
}

// ListSuppressions pages through the list.
func (e *Engine) ListSuppressions(ctx context.Context, tenant string, ch notifierv1.Channel, afterCh int16, afterAddr string, limit int) ([]store.Suppression, error) {
	return store.ListSuppressions(ctx, e.pool, tenant, ch, afterCh, afterAddr, limit)
}

// ListDeliveries pages through deliveries.
func (e *Engine) ListDeliveries(ctx context.Context, f store.ListFilter) ([]store.Delivery, error) {
	return store.ListDeliveries(ctx, e.pool, f)
}

// GetDelivery returns a delivery with its trail.
func (e *Engine) GetDelivery(ctx context.Context, tenant, requestID string) (store.Delivery, []store.Decision, error) {
	return store.GetDelivery(ctx, e.pool, tenant, requestID)
}

// Counts are a tenant's deliveries by status and reason.
func (e *Engine) Counts(ctx context.Context, tenant string) ([]store.Count, error) {
	return store.Counts(ctx, e.pool, tenant)
}

// SendTest sends a template to a customer through the pipeline now.
func (e *Engine) SendTest(ctx context.Context, tenant string, r *notifierv1.NotificationRequested) (string, error) {
	r.TenantId = tenant
	r.RequestId = "test/" + ulid.Make().String()
	r.Priority = notifierv1.Priority_PRIORITY_NORMAL
	now := e.now()
	r.RequestedAt = timestamppb.New(now)
	var t tally
	err := pg.InTx(ctx, e.pool, func(tx pgx.Tx) error {
		_, err := e.admit(ctx, tx, []store.Delivery{e.newDelivery(r, now)}, now, &t)
		return err
	})
	if err == nil {
		e.metrics.count(ctx, t)
	}
	return r.RequestId, err
}
