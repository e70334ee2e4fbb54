package churnsignal_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/proto"

	"github.com/retainhq/retain/platform/bus"
	"github.com/retainhq/retain/platform/pg"
	"github.com/retainhq/retain/platform/testenv"
	churnv1 "github.com/retainhq/retain/proto/gen/go/retain/churn/v1"
	eventsv1 "github.com/retainhq/retain/proto/gen/go/retain/events/v1"
	"github.com/retainhq/retain/services/churnsignal"
	"github.com/retainhq/retain/services/churnsignal/internal/app"
	"github.com/retainhq/retain/services/churnsignal/internal/score"
	"github.com/retainhq/retain/services/churnsignal/internal/store"
)

// TestHeldChangeVoidedByAnOlderReplica: a rolling update runs replicas of
// the previous release (e7381fb, which knows nothing of held_from) beside
// new ones on the new schema. A new replica holds the moves of three
// customers from LOW to MEDIUM. An old replica then applies an NPS 0 of
// c-000001: it announces MEDIUM to HIGH against the band it reads (the
// stored one) and writes HIGH, leaving held_from as it was; and two
// answers of c-000003, announcing MEDIUM to HIGH, then HIGH to MEDIUM, the
// band it was held at. The new replica's release must announce neither
// again (LOW to HIGH, LOW to MEDIUM): consumers of churn.risk_changed
// would get a second event for one move. c-000002's change, held beside
// them and untouched by the old replica, is published once, and tells that
// the release ran.
func TestHeldChangeVoidedByAnOlderReplica(t *testing.T) {
	const tenant = "shop"
	ctx := context.Background()
	// Any backlog of the shop holds: its few answers are behind.
	opts := func(c *churnsignal.Config) { c.MaxLag, c.HoldMinBacklog = time.Second, 1 }
	s := setup(t, opts)
	now := s.clock.Now()
	// Thresholds the answers below cross: NPS 10 scores 0 (LOW), then NPS
	// 6 about 24 (MEDIUM), then NPS 0 about 37 (HIGH), then NPS 7 about 18
	// (MEDIUM again, within the hysteresis).
	w := score.DefaultWeights()
	w.MediumAt, w.HighAt, w.Hysteresis = 20, 35, 5
	if err := store.SaveWeights(ctx, s.db, tenant, w); err != nil {
		t.Fatal(err)
	}
	customers := []string{"c-000001", "c-000002", "c-000003"}
	for _, c := range customers {
		s.publish(t, tenant, npsEv("nps10-"+c, c, now.Add(-3*day), 10))
	}
	s.caughtUp(t)

	// They answer NPS 6 while churn-signal is down: it restarts behind,
	// and holds their moves to MEDIUM.
	s.stop()
	for _, c := range customers {
		s.publish(t, tenant, npsEv("nps6-"+c, c, now.Add(-2*day), 6))
	}
	time.Sleep(1500 * time.Millisecond)
	s.start(t, opts)
	if evs, _ := s.signals(t); len(evs) != 0 {
		t.Fatalf("%d band changes published behind, want none", len(evs))
	}
	// Stopped again before the release (10 s after the batch behind), so
	// that the old replica's writes come between the hold and the release.
	s.stop()
	for _, c := range customers {
		var band, heldFrom int16
		if err := s.db.QueryRow(ctx, `SELECT band, coalesce(held_from, 0) FROM churn_scores WHERE tenant_id = $1 AND customer_id = $2`, tenant, c).Scan(&band, &heldFrom); err != nil {
			t.Fatal(err)
		}
		if band != int16(score.BandMedium) || heldFrom != int16(score.BandLow) {
			t.Fatalf("%s: band %d held from %d, want MEDIUM held from LOW: the scenario tests nothing", c, band, heldFrom)
		}
	}

	oldReplicaAppliesNPS(t, s, tenant, "c-000001", 0, now.Add(-day), 37, score.BandHigh)
	oldReplicaAppliesNPS(t, s, tenant, "c-000003", 0, now.Add(-day), 37, score.BandHigh)
	oldReplicaAppliesNPS(t, s, tenant, "c-000003", 7, now.Add(-day/2), 18, score.BandMedium)

	s.start(t, opts)
	testenv.WaitFor(t, "c-000002's held change to be published", func() bool {
		evs, _ := s.signals(t)
		return len(signalsFor(evs, "c-000002")) > 0
	})
	evs, ids := s.signals(t)
	var got []string
	for i, ev := range evs {
		got = append(got, ids[i]+" "+ev.GetPreviousBand().String()+"->"+ev.GetBand().String())
	}
	slices.Sort(got)
	want := []string{
		"shop/c-000001/1 RISK_BAND_MEDIUM->RISK_BAND_HIGH", // the old replica's
		"shop/c-000002/1 RISK_BAND_LOW->RISK_BAND_MEDIUM",
		"shop/c-000003/1 RISK_BAND_MEDIUM->RISK_BAND_HIGH", // the old replica's
		"shop/c-000003/2 RISK_BAND_HIGH->RISK_BAND_MEDIUM", // the old replica's
	}
	if !slices.Equal(got, want) {
		t.Errorf("published %q, want %q", got, want)
	}
	for c, want := range map[string]struct {
		band    score.Band
		changes int
	}{"c-000001": {score.BandHigh, 1}, "c-000002": {score.BandMedium, 1}, "c-000003": {score.BandMedium, 2}} {
		r, ok, err := store.ReadScore(ctx, s.db, tenant, c)
		if err != nil || !ok {
			t.Fatal(c, ok, err)
		}
		if r.Band != want.band || r.Published != want.band || r.BandChanges != want.changes {
			t.Errorf("%s: band %s, published %s, %d band changes; want %s, %s, %d", c, r.Band, r.Published, r.BandChanges, want.band, want.band, want.changes)
		}
	}
}

// oldReplicaAppliesNPS does what a replica of the previous release
// (e7381fb) does applying an NPS answer of customer answered at at, with
// that release's statements, copied from its internal/store/store.go: it
// locks the score row, stores the answer, announces a band change against
// the stored band (numbered by band_changes) and writes the row, knowing
// no held_from. The score and band written, sc and band, are those the
// new code computes from the answers.
func oldReplicaAppliesNPS(t *testing.T, s *stack, tenant, customer string, nps int16, at time.Time, sc int16, band score.Band) {
	t.Helper()
	ctx := context.Background()
	now := s.clock.Now()
	err := pg.InTx(ctx, s.db, func(tx pgx.Tx) error {
		// The previous release's LockScores (its lockColumns).
		var stored int16
		var changes int
		if err := tx.QueryRow(ctx, `
		SELECT customer_id, score, score_exact, band, NULL::jsonb, reasons_hash, band_changes, computed_at FROM churn_scores
		WHERE tenant_id = $1 AND customer_id = ANY($2::text[])
		ORDER BY customer_id FOR UPDATE`, tenant, []string{customer}).Scan(nil, nil, nil, &stored, nil, nil, &changes, nil); err != nil {
			return err
		}
		// The previous release's ApplyFacts, answers.
		if _, err := tx.Exec(ctx, `
			INSERT INTO churn_answers (tenant_id, answer_id, customer_id, survey_id, kind, score, answered_at)
			SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::smallint[], $6::smallint[], $7::timestamptz[])
			ON CONFLICT DO NOTHING`,
			[]string{tenant}, []string{fmt.Sprintf("nps%d-%s", nps, customer)}, []string{customer}, []string{"nps"},
			[]int16{int16(eventsv1.SurveyKind_SURVEY_KIND_NPS)}, []int16{nps}, []time.Time{at}); err != nil {
			return err
		}
		// The previous release's changes: a band that differs from the
		// stored one is announced, as band change changes+1.
		if int16(band) != stored {
			changes++
			data, err := proto.Marshal(&churnv1.ChurnRiskChanged{TenantId: tenant, CustomerId: customer, Score: int32(sc),
				Band: churnv1.RiskBand(band), PreviousBand: churnv1.RiskBand(stored)})
			if err != nil {
				return err
			}
			if err := bus.Enqueue(ctx, tx, bus.Message{Subject: bus.SignalSubject(tenant, app.SignalType),
				ID: app.MsgID(tenant, customer, changes), Type: app.SignalType, Data: data}); err != nil {
				return err
			}
		}
		// The previous release's WriteScoresOf.
		_, err := tx.Exec(ctx, `
		UPDATE churn_scores s SET score = u.score, score_exact = u.exact, band = u.band, reasons = u.reasons::jsonb,
			reasons_hash = u.hash, band_changes = u.changes, computed_at = u.at
		FROM unnest($1::text[], $2::text[], $3::smallint[], $4::float8[], $5::smallint[], $6::text[], $7::bigint[], $8::int[], $9::timestamptz[])
			AS u(tenant_id, customer_id, score, exact, band, reasons, hash, changes, at)
		WHERE s.tenant_id = u.tenant_id AND s.customer_id = u.customer_id`,
			[]string{tenant}, []string{customer}, []int16{sc}, []float64{float64(sc)}, []int16{int16(band)},
			[]string{"[]"}, []int64{0}, []int32{int32(changes)}, []time.Time{now})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}
