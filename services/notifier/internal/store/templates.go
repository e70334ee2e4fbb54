package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"

	notifierv1 "github.com/retainhq/retain/proto/gen/go/retain/notifier/v1"
	"github.com/retainhq/retain/services/notifier/templatefile"
)

// Template storage keeps variables and variants as protojson lists.
type templateBody struct {
	Variables []json.RawMessage `json:"variables"`
	Variants  []json.RawMessage `json:"variants"`
}

func marshalList[T interface {
	*notifierv1.VariableSpec | *notifierv1.TemplateVariant
}](xs []T) ([]byte, error) {
	out := make([]json.RawMessage, len(xs))
	for i, x := range xs {
		var b []byte
		var err error
		switch v := any(x).(type) {
		case *notifierv1.VariableSpec:
			b, err = protojson.Marshal(v)
		case *notifierv1.TemplateVariant:
			b, err = protojson.Marshal(v)
		}
		if err != nil {
			return nil, err
		}
		out[i] = b
	}
	return json.Marshal(out)
}

// InsertTemplate stores version t.Version of a template; first says it must
// be version 1 of a new template (ErrExists otherwise). For updates the
// version is the next one, assigned here.
func InsertTemplate(ctx context.Context, q Querier, tenant string, t *notifierv1.Template, first bool, now time.Time) (*notifierv1.Template, error) {
	vars, err := marshalList(t.GetVariables())
	if err != nil {
		return nil, err
	}
	variants, err := marshalList(t.GetVariants())
	if err != nil {
		return nil, err
	}
	var version int32
	if first {
		version = 1
	} else {
		err := q.QueryRow(ctx, `SELECT coalesce(max(version), 0) + 1 FROM template_versions WHERE tenant = $1 AND key = $2 AND channel = $3`,
			tenant, t.GetKey(), int16(t.GetChannel())).Scan(&version)
		if err != nil {
			return nil, fmt.Errorf("next version of template %s: %w", t.GetKey(), err)
		}
		if version == 1 {
			return nil, fmt.Errorf("template %q (%s): %w", t.GetKey(), templatefile.ChannelName(t.GetChannel()), ErrNotFound)
		}
	}
	_, err = q.Exec(ctx, `INSERT INTO template_versions (tenant, key, channel, version, description, variables, variants, created_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`, tenant, t.GetKey(), int16(t.GetChannel()), version, t.GetDescription(), vars, variants, now)
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "23505" {
		if first {
			return nil, fmt.Errorf("template %q (%s): %w", t.GetKey(), templatefile.ChannelName(t.GetChannel()), ErrExists)
		}
		return nil, fmt.Errorf("template %s was updated concurrently, try again: %w", t.GetKey(), err)
	}
	if err != nil {
		return nil, fmt.Errorf("store template %s: %w", t.GetKey(), err)
	}
	out := &notifierv1.Template{Key: t.GetKey(), Channel: t.GetChannel(), Version: version, Description: t.GetDescription(),
		Variables: t.GetVariables(), Variants: t.GetVariants(), CreatedAt: timestamppb.New(now)}
	return out, nil
}

const templateCols = `key, channel, version, description, variables, variants, created_at`

func scanTemplate(r pgx.Row) (*notifierv1.Template, error) {
	var t notifierv1.Template
	var ch int16
	var vars, variants []json.RawMessage
	var at time.Time
	if err := r.Scan(&t.Key, &ch, &t.Version, &t.Description, &vars, &variants, &at); err != nil {
		return nil, err
	}
	t.Channel, t.CreatedAt = notifierv1.Channel(ch), timestamppb.New(at)
	for _, b := range vars {
		v := &notifierv1.VariableSpec{}
		if err := protojson.Unmarshal(b, v); err != nil {
			return nil, fmt.Errorf("decode template %s: %w", t.Key, err)
		}
		t.Variables = append(t.Variables, v)
	}
	for _, b := range variants {
		v := &notifierv1.TemplateVariant{}
		if err := protojson.Unmarshal(b, v); err != nil {
			return nil, fmt.Errorf("decode template %s: %w", t.Key, err)
		}
		t.Variants = append(t.Variants, v)
	}
	return &t, nil
}

// GetTemplate returns a version (0: the latest).
func GetTemplate(ctx context.Context, q Querier, tenant, key string, ch notifierv1.Channel, version int32) (*notifierv1.Template, error) {
	t, err := scanTemplate(q.QueryRow(ctx, `SELECT `+templateCols+` FROM template_versions
		WHERE tenant = $1 AND key = $2 AND channel = $3 AND ($4 = 0 OR version = $4) ORDER BY version DESC LIMIT 1`,
		tenant, key, int16(ch), version))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("template %q (%s): %w", key, templatefile.ChannelName(ch), ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get template %s: %w", key, err)
	}
	return t, nil
}

// ListTemplates returns the latest version of each template.
func ListTemplates(ctx context.Context, q Querier, tenant string, ch notifierv1.Channel) ([]*notifierv1.Template, error) {
	rows, err := q.Query(ctx, `SELECT DISTINCT ON (key, channel) `+templateCols+` FROM template_versions
		WHERE tenant = $1 AND ($2 = 0 OR channel = $2) ORDER BY key, channel, version DESC`, tenant, int16(ch))
	if err != nil {
		return nil, fmt.Errorf("list templates: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (*notifierv1.Template, error) { return scanTemplate(r) })
}

// EachLatestTemplate calls fn with the latest version of every template of
// every tenant, in (tenant, key, channel) order, stopping at fn's error.
func EachLatestTemplate(ctx context.Context, q Querier, fn func(tenant string, t *notifierv1.Template) error) error {
	rows, err := q.Query(ctx, `SELECT DISTINCT ON (tenant, key, channel) tenant, `+templateCols+` FROM template_versions
		ORDER BY tenant, key, channel, version DESC`)
	if err != nil {
		return fmt.Errorf("list every tenant's templates: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var tenant string
		t, err := scanTemplate(prefixed{rows, &tenant})
		if err != nil {
			return err
		}
		if err := fn(tenant, t); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("list every tenant's templates: %w", err)
	}
	return nil
}

// prefixed scans a row whose first column (into first) precedes the ones
// scanTemplate reads.
type prefixed struct {
	pgx.Row
	first *string
}

func (p prefixed) Scan(dest ...any) error { return p.Row.Scan(append([]any{p.first}, dest...)...) }

// MarkSeeded records that tenant's default templates are being installed;
// false when they were before.
func MarkSeeded(ctx context.Context, q Querier, tenant string, now time.Time) (bool, error) {
	tag, err := q.Exec(ctx, `INSERT INTO template_seeds (tenant, seeded_at) VALUES ($1, $2) ON CONFLICT DO NOTHING`, tenant, now)
	if err != nil {
		return false, fmt.Errorf("mark templates seeded: %w", err)
	}
	return tag.RowsAffected() == 1, nil
}

// Suppression is one listed address.
type Suppression struct {
	Channel               notifierv1.Channel
	Address, Reason, Note string
	CreatedAt             time.Time
}

// AddSuppression lists an address (again: the reason is updated).
func AddSuppression(ctx context.Context, q Querier, tenant string, s Suppression) error {
	_, err := q.Exec(ctx, `INSERT INTO suppressions (tenant, channel, address, reason, note, created_at) VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (tenant, channel, address) DO UPDATE SET reason = excluded.reason, note = excluded.note`,
		tenant, int16(s.Channel), NormalizeAddress(s.Channel, s.Address), s.Reason, s.Note, s.CreatedAt)
	if err != nil {
		return fmt.Errorf("add suppression: %w", err)
	}
	return nil
}

// RemoveSuppression unlists an address; false if it was not listed.
func RemoveSuppression(ctx context.Context, q Querier, tenant string, ch notifierv1.Channel, address string) (bool, error) {
	tag, err := q.Exec(ctx, `DELETE FROM suppressions WHERE tenant = $1 AND channel = $2 AND address = $3`, tenant, int16(ch), NormalizeAddress(ch, address))
	if err != nil {
		return false, fmt.Errorf("remove suppression: %w", err)
	}
	return tag.RowsAffected() == 1, nil
}

// ListSuppressions pages through a tenant's list by address.
func ListSuppressions(ctx context.Context, q Querier, tenant string, ch notifierv1.Channel, afterCh int16, afterAddr string, limit int) ([]Suppression, error) {
	rows, err := q.Query(ctx, `SELECT channel, address, reason, note, created_at FROM suppressions
		WHERE tenant = $1 AND ($2 = 0 OR channel = $2) AND (channel, address) > ($3, $4) ORDER BY channel, address LIMIT $5`,
		tenant, int16(ch), afterCh, afterAddr, limit)
	if err != nil {
		return nil, fmt.Errorf("list suppressions: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Suppression, error) {
		var s Suppression
		var c int16
		err := r.Scan(&c, &s.Address, &s.Reason, &s.Note, &s.CreatedAt)
		s.Channel = notifierv1.Channel(c)
		return s, err
	})
}
