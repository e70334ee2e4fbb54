package app_test

import (
	"context"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/protobuf/proto"

	"github.com/retainhq/retain/platform/testenv"
	campaignv1 "github.com/retainhq/retain/proto/gen/go/retain/campaign/v1"
	"github.com/retainhq/retain/services/campaign/campaignfile"
	"github.com/retainhq/retain/services/campaign/internal/app"
	"github.com/retainhq/retain/services/campaign/internal/store"
)

// campaignLocks counts the statements that lock a campaign's row.
type campaignLocks struct{ n atomic.Int32 }

func (l *campaignLocks) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	if strings.Contains(d.SQL, "FROM campaigns") && strings.Contains(d.SQL, "FOR UPDATE") {
		l.n.Add(1)
	}
	return ctx
}

func (l *campaignLocks) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// TestUpdateLocksTheCampaignOnce: a create answers the campaign as a read
// after it shows it; an update, whether it repeats the
// campaign's state or leaves it out, and whether it changes the campaign
// or not, locks the campaign's row once, and answers the campaign as a
// read after it shows it. An archived campaign refuses updates.
func TestUpdateLocksTheCampaignOnce(t *testing.T) {
	ctx := context.Background()
	cfg := testenv.MigratedPool(t, store.Migrations).Config()
	locks := &campaignLocks{}
	cfg.ConnConfig.Tracer = locks
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	e := app.New(pool, app.Config{}, slog.New(slog.DiscardHandler))
	t.Cleanup(e.Close)
	const file = `
id: thanks
name: Thanks
trigger: {event: order.placed}
entry: {once_per_customer: {}}
steps:
  - {id: hello, send: {channel: CHANNEL_EMAIL, template_key: thank_you_feedback}}
`
	decode := func(file string) *campaignv1.Campaign {
		t.Helper()
		c, err := campaignfile.Decode([]byte(file))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	created, err := e.Create(ctx, "shop", decode(file), "", false)
	if err != nil {
		t.Fatal(err)
	}
	if read, err := e.Get(ctx, "shop", "thanks", 0); err != nil || !proto.Equal(created, read) {
		t.Errorf("created %v, a read after shows %v (%v)", created, read, err)
	}
	for _, u := range []struct {
		name, file string
		version    int32
		changed    bool
	}{
		{"changed, the state repeated", strings.Replace(file, "name: Thanks", "name: Thank you", 1) + "state: CAMPAIGN_STATE_ACTIVE\n", 2, true},
		{"the same again", strings.Replace(file, "name: Thanks", "name: Thank you", 1) + "state: CAMPAIGN_STATE_ACTIVE\n", 2, false},
		{"changed, no state", file, 3, true},
	} {
		t.Run(u.name, func(t *testing.T) {
			locks.n.Store(0)
			got, changed, err := e.Update(ctx, "shop", decode(u.file))
			if err != nil {
				t.Fatal(err)
			}
			if n := locks.n.Load(); n != 1 {
				t.Errorf("the campaign's row was locked by %d statements, want 1", n)
			}
			if got.GetVersion() != u.version || changed != u.changed {
				t.Errorf("answered version %d, changed %t; want %d, %t", got.GetVersion(), changed, u.version, u.changed)
			}
			read, err := e.Get(ctx, "shop", "thanks", 0)
			if err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(got, read) {
				t.Errorf("answered %v, a read after shows %v", got, read)
			}
		})
	}

	// Archived, the campaign refuses a valid update whatever its state
	// says; an invalid one is told what is invalid first.
	if _, err := e.SetState(ctx, "shop", "thanks", campaignv1.CampaignState_CAMPAIGN_STATE_ARCHIVED); err != nil {
		t.Fatal(err)
	}
	for _, u := range []struct{ file, want string }{
		{file, "is archived"},
		{file + "state: CAMPAIGN_STATE_PAUSED\n", "is archived"},
		{strings.Replace(file, "steps:", "holdout_percent: 95\nsteps:", 1) + "state: CAMPAIGN_STATE_ARCHIVED\n", "holdout_percent"},
	} {
		if _, _, err := e.Update(ctx, "shop", decode(u.file)); err == nil || !strings.Contains(err.Error(), u.want) {
			t.Errorf("update of the archived campaign: %v, want %q", err, u.want)
		}
	}
}
