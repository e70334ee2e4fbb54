package store

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/retainhq/retain/platform/telemetry"
	"github.com/retainhq/retain/services/metrics/internal/retention"
)

// cachedTenants are the tenants in the cache, most recently used first.
func (c *dayCache) cachedTenants() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for e := c.lru.Front(); e != nil; e = e.Next() {
		out = append(out, e.Value.(*tenantDays).name)
	}
	return out
}

// checkBalance walks the cache (no query in flight) and checks that every
// entry still has the size it was accounted at and that the tenants' and
// the cache's counters are the sums of their entries.
func checkBalance(t *testing.T, c *dayCache) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.tenants) != c.lru.Len() {
		t.Fatalf("%d tenants in the map, %d in the LRU list", len(c.tenants), c.lru.Len())
	}
	var total int64
	for name, td := range c.tenants {
		sum := tenantOverhead + int64(len(td.stored))*dayVersionBytes
		for k, e := range td.nodes {
			if e.size != nodeBytes(e.v) {
				t.Fatalf("tenant %s node %+v: accounted %d bytes, holds %d", name, k, e.size, nodeBytes(e.v))
			}
			sum += e.size
		}
		for k, e := range td.unions {
			if want := entryOverhead + bitmapBytes(e.v); e.size != want {
				t.Fatalf("tenant %s union %+v: accounted %d bytes, holds %d", name, k, e.size, want)
			}
			sum += e.size
		}
		if got := td.bytes.Load(); got != sum {
			t.Fatalf("tenant %s: counter %d bytes, entries %d", name, got, sum)
		}
		total += sum
	}
	if got := c.bytes.Load(); got != total {
		t.Fatalf("cache counter %d bytes, tenants %d", got, total)
	}
}

// metered is a store on pool with a budget and a meter read by reader.
func metered(pool *pgxpool.Pool, budget int64) (*Store, *sdkmetric.ManualReader) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	return New(pool, WithCacheBytes(budget), WithMeter(mp.Meter("test"))), reader
}

// evictions reads the eviction counter by reason.
func evictions(t *testing.T, r *sdkmetric.ManualReader) map[string]int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if sum, ok := m.Data.(metricdata.Sum[int64]); ok && m.Name == "retain.metrics.cache.evictions" {
				for _, p := range sum.DataPoints {
					reason, _ := p.Attributes.Value("reason")
					out[reason.AsString()] += p.Value
				}
			}
		}
	}
	return out
}

// cacheQueries asks every cached figure of one case and the cohort table
// (each its own query, so the budget is applied between them) and returns
// the answers as text.
func cacheQueries(t *testing.T, s *Store, tenant string, c figureCase, first, last retention.Month) string {
	t.Helper()
	ctx := context.Background()
	r, err := s.Retention(ctx, tenant, c.p, c.w)
	if err != nil {
		t.Fatal(err)
	}
	in, life, err := s.Repeat(ctx, tenant, c.p)
	if err != nil {
		t.Fatal(err)
	}
	sales, _, err := s.Sales(ctx, tenant, c.p, "EUR")
	if err != nil {
		t.Fatal(err)
	}
	cells, _, err := s.CohortCells(ctx, tenant, first, last, (last + 1).Start(), "EUR")
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("retention %+v\nrepeat %+v %+v\nsales %+v\ncohorts %+v", r, in, life, sales, cells)
}

// cacheShop is one tenant's facts in chunks, and the figures asked.
type cacheShop struct {
	chunks      []history
	cases       []figureCase
	first, last retention.Month
}

func newCacheShop(seed uint64, chunks int) cacheShop {
	start := mustDay("2024-01-01")
	h := randomHistory(seed, 40, start, 300)
	shop := cacheShop{first: retention.MonthOf(start), last: retention.MonthOf(start) + 9}
	for i, c := range figureCases(start, 10) {
		if i%4 == 0 {
			shop.cases = append(shop.cases, c)
		}
	}
	part := func(n, i int) (int, int) { return n * i / chunks, n * (i + 1) / chunks }
	for i := range chunks {
		o0, o1 := part(len(h.orders), i)
		r0, r1 := part(len(h.refunds), i)
		a0, a1 := part(len(h.answers), i)
		shop.chunks = append(shop.chunks, history{orders: h.orders[o0:o1], refunds: h.refunds[r0:r1], answers: h.answers[a0:a1]})
	}
	return shop
}

// all asks every case of the shop.
func (shop cacheShop) all(t *testing.T, s *Store, tenant string) {
	t.Helper()
	for _, c := range shop.cases {
		cacheQueries(t, s, tenant, c, shop.first, shop.last)
	}
}

// tenantBytes is what one tenant of shop's size takes in an unbounded cache
// once every case was asked.
func tenantBytes(t *testing.T, pool *pgxpool.Pool, shop cacheShop, tenant string) int64 {
	t.Helper()
	s := New(pool, WithCacheBytes(math.MaxInt64))
	for _, c := range shop.chunks {
		send(t, s, tenant, c, 50)
	}
	shop.all(t, s, tenant)
	return s.days.bytes.Load()
}

// TestCacheBudgetKeepsAnswers asks the figures of several tenants, while
// their facts arrive, from stores with budgets that evict whole tenants,
// trim a tenant over the budget alone, or keep nothing, and checks that
// every answer is the one of an unbounded cache.
func TestCacheBudgetKeepsAnswers(t *testing.T) {
	pool := newStore(t).pool
	const chunks = 6
	size := tenantBytes(t, pool, newCacheShop(99, chunks), "probe")
	unbounded := New(pool, WithCacheBytes(math.MaxInt64))
	type bounded struct {
		name   string
		s      *Store
		reader *sdkmetric.ManualReader
		want   []string // eviction reasons that must occur
	}
	var stores []bounded
	for _, b := range []struct {
		name   string
		budget int64
		want   []string
	}{
		{"nothing kept", 0, []string{"tenant", "unions", "rollups", "days"}},
		{"a third of a tenant", size / 3, []string{"tenant", "unions", "rollups"}},
		{"a tenant and a half", size * 3 / 2, []string{"tenant"}},
	} {
		s, r := metered(pool, b.budget)
		stores = append(stores, bounded{b.name, s, r, b.want})
	}
	tenants := []string{"t1", "t2", "t3"}
	shops := map[string]cacheShop{}
	for i, tenant := range tenants {
		shops[tenant] = newCacheShop(uint64(30+i), chunks)
	}
	for round := range chunks {
		for i, tenant := range tenants {
			send(t, unbounded, tenant, shops[tenant].chunks[round], 50)
			// Ask every tenant after each tenant's chunk: each store sees
			// facts arrive between its queries.
			for _, asked := range tenants[:i+1] {
				shop := shops[asked]
				c := shop.cases[(round*len(tenants)+i)%len(shop.cases)]
				want := cacheQueries(t, unbounded, asked, c, shop.first, shop.last)
				for _, b := range stores {
					if got := cacheQueries(t, b.s, asked, c, shop.first, shop.last); got != want {
						t.Fatalf("%s, tenant %s, round %d, %v..%v: got\n%s\nwant\n%s", b.name, asked, round, c.p.From, c.p.To, got, want)
					}
					if got := b.s.days.bytes.Load(); got > b.s.days.budget {
						t.Fatalf("%s: %d bytes cached, budget %d", b.name, got, b.s.days.budget)
					}
				}
			}
		}
	}
	for _, b := range stores {
		got := evictions(t, b.reader)
		for _, reason := range b.want {
			if got[reason] == 0 {
				t.Errorf("%s: no eviction of reason %s (%v); the budget misses its case", b.name, reason, got)
			}
		}
		checkBalance(t, b.s.days)
	}
}

// TestCacheBudgetEvictsLeastRecentlyUsed asks tenants of equal size in turn
// with room for two and a half of them: after each query the cache is
// within the budget and holds the most recently asked tenants.
func TestCacheBudgetEvictsLeastRecentlyUsed(t *testing.T) {
	pool := newStore(t).pool
	shop := newCacheShop(5, 2)
	size := tenantBytes(t, pool, shop, "probe")
	s, reader := metered(pool, size*5/2)
	for _, tenant := range []string{"a", "b", "c", "d"} {
		for _, c := range shop.chunks {
			send(t, s, tenant, c, 50)
		}
	}
	for _, step := range []struct {
		tenant string
		cached []string
	}{
		{"a", []string{"a"}},
		{"b", []string{"b", "a"}},
		{"c", []string{"c", "b"}},
		{"a", []string{"a", "c"}},
		{"c", []string{"c", "a"}},
		{"d", []string{"d", "c"}},
		{"c", []string{"c", "d"}},
	} {
		for _, c := range shop.cases {
			cacheQueries(t, s, step.tenant, c, shop.first, shop.last)
			if got := s.days.bytes.Load(); got > s.days.budget {
				t.Fatalf("after a query of %s: %d bytes cached, budget %d", step.tenant, got, s.days.budget)
			}
			if got := s.days.cachedTenants(); got[0] != step.tenant {
				t.Fatalf("after a query of %s: cached %v", step.tenant, got)
			}
		}
		if got := s.days.cachedTenants(); !slices.Equal(got, step.cached) {
			t.Fatalf("after the queries of %s: cached %v, want %v", step.tenant, got, step.cached)
		}
		checkBalance(t, s.days)
	}
	if got := evictions(t, reader); got["tenant"] != 3 || got["unions"]+got["rollups"]+got["days"] != 0 {
		t.Errorf("evictions %v, want 3 whole tenants (a, b, a) and nothing else", got)
	}

	t.Run("one tenant over the budget alone keeps what fits", func(t *testing.T) {
		s, reader := metered(pool, size/4)
		shop.all(t, s, "a")
		if got := s.days.cachedTenants(); !slices.Equal(got, []string{"a"}) {
			t.Fatalf("cached %v, want [a]", got)
		}
		if got := s.days.bytes.Load(); got > s.days.budget || got < s.days.budget/2 {
			t.Fatalf("%d bytes cached, budget %d", got, s.days.budget)
		}
		got := evictions(t, reader)
		if got["unions"] == 0 || got["rollups"] == 0 || got["tenant"] != 0 {
			t.Errorf("evictions %v, want unions and rollups dropped, no tenant", got)
		}
		checkBalance(t, s.days)
	})
	t.Run("nothing kept", func(t *testing.T) {
		s := New(pool, WithCacheBytes(0))
		for _, tenant := range []string{"a", "b"} {
			shop.all(t, s, tenant)
			if got, n := s.days.bytes.Load(), len(s.days.cachedTenants()); got != 0 || n != 0 {
				t.Fatalf("%d bytes and %d tenants cached with a budget of 0", got, n)
			}
		}
	})
}

// TestCacheAccountingBalances fills, invalidates (new facts, a reset) and
// evicts the cache and checks after each step that the counters are the
// sums of the entries, and that they are 0 once everything is evicted.
func TestCacheAccountingBalances(t *testing.T) {
	s := newStore(t)
	shop := newCacheShop(11, 4)
	tenants := []string{"x", "y"}
	for i, chunk := range shop.chunks {
		for _, tenant := range tenants {
			send(t, s, tenant, chunk, 50)
			shop.all(t, s, tenant)
			checkBalance(t, s.days)
		}
		if i == 1 {
			if err := s.ResetTenant(context.Background(), "x", "metrics-facts"); err != nil {
				t.Fatal(err)
			}
			shop.all(t, s, "x")
			checkBalance(t, s.days)
		}
	}
	if s.days.bytes.Load() == 0 {
		t.Fatal("nothing cached")
	}
	// No query is in flight: the budget can change under the cache.
	s.days.budget = 0
	cacheQueries(t, s, "x", shop.cases[0], shop.first, shop.last)
	checkBalance(t, s.days)
	if got, n := s.days.bytes.Load(), len(s.days.cachedTenants()); got != 0 || n != 0 {
		t.Fatalf("everything evicted: %d bytes and %d tenants left", got, n)
	}
}

// TestCacheBudgetConcurrentQueries asks several tenants from several
// goroutines with room for about one tenant (run with -race): answers stay
// those of an unbounded cache, and once the queries are done the cache is
// within its budget and balanced.
func TestCacheBudgetConcurrentQueries(t *testing.T) {
	pool := newStore(t).pool
	shop := newCacheShop(21, 2)
	size := tenantBytes(t, pool, shop, "probe")
	unbounded := New(pool, WithCacheBytes(math.MaxInt64))
	tenants := []string{"p", "q", "r"}
	want := map[string][]string{}
	for _, tenant := range tenants {
		for _, c := range shop.chunks {
			send(t, unbounded, tenant, c, 50)
		}
		for _, c := range shop.cases {
			want[tenant] = append(want[tenant], cacheQueries(t, unbounded, tenant, c, shop.first, shop.last))
		}
	}
	s := New(pool, WithCacheBytes(size))
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for g := range 4 {
		wg.Go(func() {
			for i := range 3 * len(shop.cases) {
				tenant := tenants[(g+i)%len(tenants)]
				k := (g*7 + i) % len(shop.cases)
				if got := cacheQueries(t, s, tenant, shop.cases[k], shop.first, shop.last); got != want[tenant][k] {
					errs <- fmt.Sprintf("tenant %s case %d: got\n%s\nwant\n%s", tenant, k, got, want[tenant][k])
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if got := s.days.bytes.Load(); got > s.days.budget {
		t.Fatalf("%d bytes cached, budget %d", got, s.days.budget)
	}
	checkBalance(t, s.days)
}

// TestCacheMetricsExported checks the names Prometheus scrapes.
func TestCacheMetricsExported(t *testing.T) {
	var logs bytes.Buffer
	tel, err := telemetry.Setup(context.Background(), telemetry.Config{Service: "metrics", LogLevel: "debug", Output: &logs})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	pool := newStore(t).pool
	s := New(pool, WithCacheBytes(0), WithMeter(tel.MeterProvider.Meter("retain/metrics")), WithLogger(tel.Logger))
	shop := newCacheShop(3, 1)
	send(t, s, "m", shop.chunks[0], 50)
	cacheQueries(t, s, "m", shop.cases[0], shop.first, shop.last)

	rec := httptest.NewRecorder()
	tel.MetricsHandler.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	for _, want := range []string{"retain_metrics_cache_bytes{", "retain_metrics_cache_evictions_total{", `reason="tenant"`, `reason="unions"`} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s:\n%s", want, grep(body, "retain_metrics_cache"))
		}
	}
	if !strings.Contains(logs.String(), "least recently used tenant evicted") {
		t.Errorf("no eviction logged at debug level:\n%.2000s", logs.String())
	}
}

func grep(text, substr string) string {
	var out []string
	for line := range strings.Lines(text) {
		if strings.Contains(line, substr) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "")
}
