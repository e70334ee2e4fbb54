package store

import (
	"cmp"
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/retainhq/retain/platform/pg"
	"github.com/retainhq/retain/platform/testenv"
	campaignv1 "github.com/retainhq/retain/proto/gen/go/retain/campaign/v1"
	churnv1 "github.com/retainhq/retain/proto/gen/go/retain/churn/v1"
	"github.com/retainhq/retain/services/campaign/internal/domain"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// TestOrdersAreOrderIndependent applies the same order facts (with
// duplicates and conflicting re-sends) in many arrival orders and
// batchings: the stored orders and the RFM summary come out the same every
// time, the re-sent version that sorts first winning as in metrics.
func TestOrdersAreOrderIndependent(t *testing.T) {
	ctx := context.Background()
	pool := testenv.MigratedPool(t, Migrations)
	t0 := time.Date(2026, 1, 10, 9, 0, 0, 0, time.UTC)
	order := func(id, customer string, at time.Time, total int64, currency string) OrderFact {
		return OrderFact{Order: domain.Order{ID: id, At: at, TotalMinor: total, Currency: currency}, CustomerID: customer}
	}
	facts := []OrderFact{
		order("o1", "c1", t0, 1000, "EUR"),
		order("o1", "c1", t0.Add(-time.Hour), 1200, "EUR"), // a re-send placed earlier: it wins, whatever its total
		order("o2", "c1", t0.Add(24*time.Hour), 500, "EUR"),
		order("o2", "c1", t0.Add(24*time.Hour), 400, "EUR"), // same instant and customer: the smaller total wins
		order("o3", "c2", t0.Add(48*time.Hour), 800, "GBP"),
		order("o3", "c3", t0.Add(48*time.Hour), 800, "GBP"),     // same instant: the customer sorting first wins
		order("o4", "c2", t0.Add(500*24*time.Hour), 100, "GBP"), // after the instant summarised
	}
	want := map[string][]domain.Order{
		"c1": {
			{ID: "o1", At: t0.Add(-time.Hour), TotalMinor: 1200, Currency: "EUR"},
			{ID: "o2", At: t0.Add(24 * time.Hour), TotalMinor: 400, Currency: "EUR"},
		},
		"c2": {
			{ID: "o3", At: t0.Add(48 * time.Hour), TotalMinor: 800, Currency: "GBP"},
			{ID: "o4", At: t0.Add(500 * 24 * time.Hour), TotalMinor: 100, Currency: "GBP"},
		},
	}
	at := t0.Add(100 * 24 * time.Hour)
	wantRFM := []domain.RFMValue{
		{Customer: "c1", LastOrder: t0.Add(24 * time.Hour), Orders: 2},
		{Customer: "c2", LastOrder: t0.Add(48 * time.Hour), Orders: 1},
	}

	// Each run is a tenant with its own arrival order and batching; a
	// statement carries the next batch of every run at once, so the same
	// order ids of different tenants meet in it.
	rng := rand.New(rand.NewPCG(1, 2))
	const runs = 12
	var rounds [][]OrderFact
	for run := range runs {
		tenant := fmt.Sprintf("t%d", run)
		sent := slices.Clone(facts)
		switch run {
		case 0: // as listed, in one batch
		case 1: // the re-sends before the originals, one at a time
			slices.Reverse(sent)
		default: // shuffled, with redeliveries
			sent = append(sent, facts[rng.IntN(len(facts))], facts[rng.IntN(len(facts))])
			rng.Shuffle(len(sent), func(i, j int) { sent[i], sent[j] = sent[j], sent[i] })
		}
		for k := 0; len(sent) > 0; k++ {
			n := len(sent)
			if run > 0 {
				n = min(1+rng.IntN(3), len(sent))
				if run == 1 {
					n = 1
				}
			}
			if k == len(rounds) {
				rounds = append(rounds, nil)
			}
			for _, o := range sent[:n] {
				o.Tenant = tenant
				rounds[k] = append(rounds[k], o)
			}
			sent = sent[n:]
		}
	}
	for _, batch := range rounds {
		if err := pg.InTx(ctx, pool, func(tx pgx.Tx) error { return UpsertOrders(ctx, tx, batch) }); err != nil {
			t.Fatal(err)
		}
	}
	for run := range runs {
		tenant := fmt.Sprintf("t%d", run)
		byID := map[string]*domain.Customer{}
		var keys []CustomerKey
		for _, c := range []string{"c1", "c2", "c3"} {
			keys = append(keys, CustomerKey{tenant, c}, CustomerKey{"other" + tenant, c})
		}
		loaded, err := LoadCustomers(ctx, pool, keys, time.Time{}, -1)
		if err != nil {
			t.Fatal(err)
		}
		for k, c := range loaded {
			if k.Tenant != tenant {
				t.Fatalf("run %d: loaded %+v for a tenant with no facts", run, k)
			}
			byID[k.ID] = c
		}
		got := byID
		if c3, ok := got["c3"]; ok {
			t.Fatalf("run %d: c3 has orders %+v, want none (its version of o3 loses)", run, c3.Orders)
		}
		for c, wantOrders := range want {
			if len(got[c].Orders) != len(wantOrders) {
				t.Fatalf("run %d, %s: orders %+v, want %+v", run, c, got[c].Orders, wantOrders)
			}
			for i, o := range got[c].Orders {
				w := wantOrders[i]
				if o.ID != w.ID || !o.At.Equal(w.At) || o.TotalMinor != w.TotalMinor || o.Currency != w.Currency {
					t.Fatalf("run %d, %s: order %d %+v, want %+v", run, c, i, o, w)
				}
			}
		}
		vs, err := RFMValues(ctx, pool, tenant, at)
		if err != nil {
			t.Fatal(err)
		}
		slices.SortFunc(vs, func(a, b domain.RFMValue) int { return cmp.Compare(a.Customer, b.Customer) })
		if len(vs) != len(wantRFM) {
			t.Fatalf("run %d: RFM values %+v, want %+v", run, vs, wantRFM)
		}
		for i, v := range vs {
			w := wantRFM[i]
			if v.Customer != w.Customer || !v.LastOrder.Equal(w.LastOrder) || v.Orders != w.Orders {
				t.Fatalf("run %d: RFM value %+v, want %+v", run, v, w)
			}
		}
	}
}

// TestInsertEnrollmentsSkipsExistingKeys: keys already stored, or twice in
// the call, are skipped with their effects; a key another transaction
// inserts after the read fails the call (the consumer retries the batch),
// and the retry skips it.
func TestInsertEnrollmentsSkipsExistingKeys(t *testing.T) {
	ctx := context.Background()
	pool := testenv.MigratedPool(t, Migrations)
	now := time.Date(2026, 1, 10, 9, 0, 0, 0, time.UTC)
	enr := func(customer, key string) Enrollment {
		return Enrollment{Tenant: "shop", CampaignID: "thanks", Version: 1, CustomerID: customer, Key: key, Anchor: now, EnteredAt: now,
			AttributionUntil: now.Add(time.Hour), GoalEvent: domain.EventOrderPlaced, Status: domain.StatusActive, Due: &now, StepsDone: []string{"hello"}}
	}
	insert := func(tx pgx.Tx, es ...Enrollment) ([]string, error) {
		got, err := InsertEnrollments(ctx, tx, es)
		var keys []string
		for _, e := range got {
			if e.ID == 0 {
				t.Errorf("%s/%s created without an id", e.CustomerID, e.Key)
			}
			keys = append(keys, e.CustomerID+"/"+e.Key)
		}
		return keys, err
	}
	if err := pg.InTx(ctx, pool, func(tx pgx.Tx) error {
		got, err := insert(tx, enr("c1", "o1"), enr("c1", "o1"), enr("c2", "o2"))
		if fmt.Sprint(got) != "[c1/o1 c2/o2]" {
			t.Errorf("first call created %v", got)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if err := pg.InTx(ctx, pool, func(tx pgx.Tx) error {
		got, err := insert(tx, enr("c1", "o1"), enr("c1", "o3"))
		if fmt.Sprint(got) != "[c1/o3]" {
			t.Errorf("second call created %v", got)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}

	// Another transaction inserts c3/o4 between this one's read and copy.
	other, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := insert(other, enr("c3", "o4")); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := insert(tx, enr("c3", "o4")); done <- err }()
	testenv.WaitFor(t, "the copy to wait for the other transaction's key", func() bool {
		var waiting int
		err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&waiting)
		return err == nil && waiting == 1
	})
	if err := other.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err == nil {
		t.Fatal("a key inserted meanwhile by another transaction was copied again")
	}
	_ = tx.Rollback(ctx)
	if err := pg.InTx(ctx, pool, func(tx pgx.Tx) error {
		got, err := insert(tx, enr("c3", "o4"))
		if len(got) != 0 {
			t.Errorf("the retry created %v", got)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM enrollments`).Scan(&n); err != nil || n != 4 {
		t.Fatalf("%d enrollments stored (%v), want 4", n, err)
	}
}

// TestUpgradeKeepsEnrollments migrates a database that the previous schema
// (0001-0002) filled, with an order goal written into converted_at, member
// rows and sends, to the current one: the enrollments, their conversions
// (now read from the orders), the report and the timers carry on, and the
// entry keys still stop a second enrollment.
func TestUpgradeKeepsEnrollments(t *testing.T) {
	ctx := context.Background()
	pool := testenv.MigratedPool(t)
	old := fstest.MapFS{}
	for _, name := range []string{"0001_campaign.sql", "0002_enrollment_writes.sql"} {
		data, err := migrationFiles.ReadFile("migrations/" + name)
		if err != nil {
			t.Fatal(err)
		}
		old[name] = &fstest.MapFile{Data: data}
	}
	if err := pg.Migrate(ctx, pool, nil, pg.MigrationSet{Component: "campaign", FS: old, Dir: "."}); err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 1, 10, 9, 0, 0, 0, time.UTC)
	for _, stmt := range []string{
		`INSERT INTO campaigns (tenant, id, version, state, created_at, updated_at) VALUES ('shop', 'thanks', 1, 1, $1, $1)`,
		`INSERT INTO campaign_orders VALUES ('shop', 'o1', 'c1', $1, 1000, 'EUR', ''), ('shop', 'o2', 'c1', $1::timestamptz + interval '1 day', 2500, 'EUR', '')`,
		`INSERT INTO campaign_members VALUES ('shop', 'thanks', 'c1', false, $1, 1), ('shop', 'thanks', 'c2', true, $1, 1)`,
		`INSERT INTO enrollments (tenant, campaign_id, version, customer_id, entry_key, holdout, anchor_at, entered_at, attribution_until,
			goal_event, stop_on_goal, status, step, due_at, armed, steps_done, converted_at)
		VALUES ('shop', 'thanks', 1, 'c1', 'order_id:o1', false, $1, $1, $1::timestamptz + interval '30 days', 'order.placed', true,
				'ACTIVE', 1, $1::timestamptz + interval '3 days', false, '{wait}', $1::timestamptz + interval '1 day'),
			('shop', 'thanks', 1, 'c2', 'order_id:o9', true, $1, $1, $1::timestamptz + interval '30 days', 'order.placed', true,
				'ACTIVE', 1, $1::timestamptz + interval '3 days', false, '{wait}', NULL)`,
		`INSERT INTO campaign_sends VALUES ('shop', 'thanks/1/hello', 'thanks', 1, 'hello', $1)`,
	} {
		if _, err := pool.Exec(ctx, stmt, t0); err != nil {
			t.Fatal(err)
		}
	}
	if err := pg.Migrate(ctx, pool, nil, Migrations); err != nil {
		t.Fatal(err)
	}
	c, err := ReportCounts(ctx, pool, "shop", "thanks")
	if err != nil {
		t.Fatal(err)
	}
	if c.Treated != 1 || c.Holdout != 1 || c.ConvTreated != 1 || c.ConvHoldout != 0 || c.Active != 1 || len(c.Revenue) != 1 || c.Revenue[0].Treated != 2500 {
		t.Fatalf("report after the upgrade: %+v", c)
	}
	ens, err := CustomerEnrollments(ctx, pool, EnrollmentFilter{Tenant: "shop", Customer: "c1", Limit: 10})
	if err != nil || len(ens) != 1 || ens[0].Status != domain.StatusConverted || ens[0].ConvertedAt == nil || !ens[0].ConvertedAt.Equal(t0.Add(24*time.Hour)) {
		t.Fatalf("c1's enrollments after the upgrade: %+v (%v)", ens, err)
	}
	if err := pg.InTx(ctx, pool, func(tx pgx.Tx) error {
		due, err := LockDue(ctx, tx, t0.Add(4*24*time.Hour), 10)
		if err != nil {
			return err
		}
		if len(due) != 2 || !due[0].Converted || due[1].Converted {
			t.Errorf("due after the upgrade: %+v", due)
		}
		created, err := InsertEnrollments(ctx, tx, []Enrollment{{Tenant: "shop", CampaignID: "thanks", Version: 1, CustomerID: "c1", Key: "order_id:o1",
			Anchor: t0, EnteredAt: t0, AttributionUntil: t0, GoalEvent: domain.EventOrderPlaced, Status: domain.StatusActive}})
		if len(created) != 0 {
			t.Errorf("an existing entry key was enrolled again: %+v", created)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
}

// TestCustomerIDsPagesTheUnion pages through customers known from a
// profile, from orders, or from both, in pages smaller than either table:
// every customer comes exactly once, in id order, and other tenants' never.
func TestCustomerIDsPagesTheUnion(t *testing.T) {
	ctx := context.Background()
	pool := testenv.MigratedPool(t, Migrations)
	t0 := time.Date(2026, 1, 10, 9, 0, 0, 0, time.UTC)
	var orders []OrderFact
	var profiles []Profile
	var want []string
	for i := range 40 {
		c := fmt.Sprintf("c%02d", i)
		want = append(want, c)
		if i%3 != 0 { // two in three have orders, some several
			for k := range 1 + i%4 {
				orders = append(orders, OrderFact{Tenant: "shop", Order: domain.Order{ID: fmt.Sprintf("%s-o%d", c, k), At: t0, TotalMinor: 1, Currency: "EUR"}, CustomerID: c})
			}
		}
		if i%2 == 0 || i%3 == 0 { // and some a profile (all without orders)
			profiles = append(profiles, Profile{Tenant: "shop", CustomerID: c, Locale: "en", At: t0})
		}
	}
	if err := pg.InTx(ctx, pool, func(tx pgx.Tx) error {
		if err := UpsertOrders(ctx, tx, orders); err != nil {
			return err
		}
		return UpsertProfiles(ctx, tx, append(profiles, Profile{Tenant: "other", CustomerID: "c05x", Locale: "en", At: t0}))
	}); err != nil {
		t.Fatal(err)
	}
	for _, limit := range []int{1, 3, 7, 40, 100} {
		var got []string
		after := ""
		for {
			ids, err := CustomerIDs(ctx, pool, "shop", after, limit)
			if err != nil {
				t.Fatal(err)
			}
			if len(ids) == 0 {
				break
			}
			if len(ids) > limit {
				t.Fatalf("limit %d: a page of %d", limit, len(ids))
			}
			got = append(got, ids...)
			after = ids[len(ids)-1]
		}
		if !slices.Equal(got, want) {
			t.Fatalf("limit %d: paged %v, want %v", limit, got, want)
		}
	}
}

// TestAudienceClaimLapses: a scheduled audience's claim holds off other
// replicas for the lease; a pass whose replica died is claimed again once
// the lease lapses; a completed pass makes the audience due a period after
// its claim, and a stale claimant completing late changes nothing.
func TestAudienceClaimLapses(t *testing.T) {
	ctx := context.Background()
	pool := testenv.MigratedPool(t, Migrations)
	t0 := time.Date(2026, 1, 10, 9, 0, 0, 0, time.UTC)
	const lease = 15 * time.Minute
	for _, c := range []struct {
		id    string
		every time.Duration
	}{{"daily", 24 * time.Hour}, {"often", 5 * time.Minute}} {
		if err := pg.InTx(ctx, pool, func(tx pgx.Tx) error {
			_, err := InsertCampaign(ctx, tx, "shop", &campaignv1.Campaign{Id: c.id}, campaignv1.CampaignState_CAMPAIGN_STATE_ACTIVE, "", c.every, t0)
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	claim := func(at time.Time) map[string]Claim {
		t.Helper()
		cs, err := ClaimAudiences(ctx, pool, at, lease)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]Claim{}
		for _, c := range cs {
			out[c.ID] = c
		}
		return out
	}
	first := claim(t0)
	if len(first) != 2 || !first["daily"].Held.Equal(t0.Add(lease)) || !first["often"].Held.Equal(t0.Add(5*time.Minute)) {
		t.Fatalf("first claims %+v", first)
	}
	if got := claim(t0.Add(time.Minute)); len(got) != 0 {
		t.Fatalf("claimed while held: %+v", got)
	}
	// The first claimant died: the daily pass is claimed again when the lease lapses.
	second := claim(t0.Add(lease + time.Minute))
	if _, ok := second["daily"]; !ok {
		t.Fatalf("lapsed claim not taken again: %+v", second)
	}
	if err := CompleteAudience(ctx, pool, second["daily"]); err != nil {
		t.Fatal(err)
	}
	// The first claimant was only slow: its late completion changes nothing.
	if err := CompleteAudience(ctx, pool, first["daily"]); err != nil {
		t.Fatal(err)
	}
	next := t0.Add(lease + time.Minute + 24*time.Hour)
	if got, ok := claim(next.Add(-time.Second))["daily"]; ok {
		t.Fatalf("daily claimed before its period: %+v", got)
	}
	if _, ok := claim(next)["daily"]; !ok {
		t.Fatal("daily not due a period after its completed claim")
	}
}

// TestLoadCustomersSumsUpEarlierOrders: orders placed before since are not
// listed but summed up, the latest of them and their number up to the cap
// (all of them with a negative cap), per tenant and customer.
func TestLoadCustomersSumsUpEarlierOrders(t *testing.T) {
	ctx := context.Background()
	pool := testenv.MigratedPool(t, Migrations)
	t0 := time.Date(2026, 1, 10, 9, 0, 0, 0, time.UTC)
	var orders []OrderFact
	for _, tenant := range []string{"a", "b"} {
		for k := range 12 { // one a month, for a year
			orders = append(orders, OrderFact{Tenant: tenant, CustomerID: "c1",
				Order: domain.Order{ID: fmt.Sprintf("o%d", k), At: t0.AddDate(0, k, 0), TotalMinor: 100, Currency: "EUR"}})
		}
	}
	orders = append(orders, OrderFact{Tenant: "a", CustomerID: "new", Order: domain.Order{ID: "n1", At: t0.AddDate(1, 0, 0), TotalMinor: 1, Currency: "EUR"}})
	if err := pg.InTx(ctx, pool, func(tx pgx.Tx) error { return UpsertOrders(ctx, tx, orders) }); err != nil {
		t.Fatal(err)
	}
	since := t0.AddDate(0, 9, 0) // listed: the 10th, 11th and 12th
	keys := []CustomerKey{{"a", "c1"}, {"b", "c1"}, {"a", "new"}}
	for _, tc := range []struct {
		countCap, want int64
	}{{0, 0}, {2, 2}, {9, 9}, {50, 9}, {-1, 9}} {
		got, err := LoadCustomers(ctx, pool, keys, since, tc.countCap)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range keys[:2] {
			c := got[k]
			if c == nil || len(c.Orders) != 3 || c.Orders[0].ID != "o9" || !c.Since.Equal(since) ||
				c.Earlier.Count != tc.want || !c.Earlier.Last.Equal(t0.AddDate(0, 8, 0)) {
				t.Fatalf("cap %d, %v: %+v; want o9-o11 listed, %d earlier up to %s", tc.countCap, k, c, tc.want, t0.AddDate(0, 8, 0))
			}
		}
		if c := got[keys[2]]; c == nil || len(c.Orders) != 1 || c.Earlier != (domain.OrderSummary{}) {
			t.Fatalf("cap %d: a customer with no earlier order: %+v", tc.countCap, c)
		}
	}
}

// TestBandsAndProfilesDoNotDeadlock: the signals consumer's band upserts
// and the facts consumer's profile upserts write the same customers' rows
// at once, many times over; both meet the rows in key order, so neither
// transaction ever waits on the other in a cycle (SQLSTATE 40P01).
func TestBandsAndProfilesDoNotDeadlock(t *testing.T) {
	ctx := context.Background()
	pool := testenv.MigratedPool(t, Migrations)
	const customers, rounds = 300, 40
	now := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	var keys []CustomerKey
	for i := range customers {
		keys = append(keys, CustomerKey{"acme", fmt.Sprintf("c-%d", i)})
	}
	if err := pg.InTx(ctx, pool, func(tx pgx.Tx) error { return LockCustomers(ctx, tx, keys) }); err != nil {
		t.Fatal(err)
	}
	bands := func(tx pgx.Tx, r int) error {
		bs := make([]Band, 0, customers)
		for _, k := range keys {
			bs = append(bs, Band{Tenant: k.Tenant, CustomerID: k.ID, Band: churnv1.RiskBand(1 + r%3), At: now.Add(time.Duration(r) * time.Minute)})
		}
		return UpsertBands(ctx, tx, bs)
	}
	profiles := func(tx pgx.Tx, r int) error {
		ps := make([]Profile, 0, customers)
		for _, k := range keys {
			ps = append(ps, Profile{Tenant: k.Tenant, CustomerID: k.ID, Locale: fmt.Sprintf("l%d", r), At: now.Add(time.Duration(r) * time.Minute)})
		}
		return UpsertProfiles(ctx, tx, ps)
	}
	testenv.ConcurrentTx(t, pool, rounds, bands, profiles)
}

// TestDeliveryOutcomesDoNotDeadlock: two replicas' deliveries consumers
// store outcomes of the same requests at once (a request's outcomes
// spread over batches), many times over; both meet the rows in key
// order, so neither waits on the other in a cycle (SQLSTATE 40P01).
func TestDeliveryOutcomesDoNotDeadlock(t *testing.T) {
	ctx := context.Background()
	pool := testenv.MigratedPool(t, Migrations)
	const requests, rounds = 300, 40
	outcomes := func(seq func(round int) int32) func(pgx.Tx, int) error {
		return func(tx pgx.Tx, r int) error {
			ds := make([]Delivery, 0, requests)
			for i := range requests {
				ds = append(ds, Delivery{Tenant: "acme", RequestID: fmt.Sprintf("r-%d", i), CampaignID: "c", Outcome: 1, Sequence: seq(r)})
			}
			return UpsertDeliveries(ctx, tx, ds)
		}
	}
	testenv.ConcurrentTx(t, pool, rounds,
		outcomes(func(r int) int32 { return int32(2 * r) }),
		outcomes(func(r int) int32 { return int32(2*r + 1) }))
}

// TestPauseAndGoalsDoNotDeadlock: pausing and resuming a campaign (the
// API) updates all its running enrollments while the facts consumer
// records goals on those of a batch's customers, many times over; both
// meet the rows in key order, so neither waits on the other in a cycle
// (SQLSTATE 40P01).
func TestPauseAndGoalsDoNotDeadlock(t *testing.T) {
	ctx := context.Background()
	pool := testenv.MigratedPool(t, Migrations)
	const customers, rounds = 300, 40
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	due := t0.Add(5000 * time.Hour)
	if err := pg.InTx(ctx, pool, func(tx pgx.Tx) error {
		if _, err := InsertCampaign(ctx, tx, "acme", &campaignv1.Campaign{Id: "care"}, campaignv1.CampaignState_CAMPAIGN_STATE_ACTIVE, "", 0, t0); err != nil {
			return err
		}
		// Inserted in no particular order: a table's physical order is
		// not its key order.
		es := make([]Enrollment, customers)
		for i, p := range rand.New(rand.NewPCG(3, 4)).Perm(customers) {
			es[i] = Enrollment{Tenant: "acme", CampaignID: "care", Version: 1, CustomerID: fmt.Sprintf("c-%d", p), Key: "once", Anchor: t0, EnteredAt: t0,
				AttributionUntil: t0.Add(10000 * time.Hour), GoalEvent: domain.EventSurveyAnswered, Status: domain.StatusActive, Due: &due, Armed: true}
		}
		_, err := InsertEnrollments(ctx, tx, es)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	pauses := func(tx pgx.Tx, r int) error {
		state := campaignv1.CampaignState_CAMPAIGN_STATE_PAUSED
		if r%2 == 1 {
			state = campaignv1.CampaignState_CAMPAIGN_STATE_ACTIVE
		}
		_, err := SetState(ctx, tx, "acme", "care", state, t0)
		return err
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	goals := func(tx pgx.Tx, r int) error {
		// The plan of a batch against a large table (a walk of the
		// customers' index), on a few hundred rows.
		for _, set := range []string{"enable_seqscan", "enable_hashjoin", "enable_mergejoin"} {
			if _, err := tx.Exec(ctx, "SET LOCAL "+set+" = off"); err != nil {
				return err
			}
		}
		// Each round's answers come earlier, so each records a conversion.
		// Half the customers, in the order their events came.
		evs := make([]GoalEvent, customers/2)
		for i, p := range rnd.Perm(customers)[:customers/2] {
			evs[i] = GoalEvent{Tenant: "acme", CustomerID: fmt.Sprintf("c-%d", p), Type: domain.EventSurveyAnswered, At: t0.Add(time.Duration(1000-r) * time.Hour)}
		}
		return MarkGoals(ctx, tx, evs, nil, t0)
	}
	testenv.ConcurrentTx(t, pool, rounds, pauses, goals)
}
