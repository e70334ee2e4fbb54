package store

import (
	"context"
	"log/slog"

	"github.com/RoaringBitmap/roaring/v2"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
)

// The day cache has a byte budget (RETAIN_METRICS_CACHE_BYTES). What it
// holds is accounted as it is inserted: every cached bitmap at its roaring
// GetSizeInBytes plus a fixed overhead, each entry keeping the size it was
// counted at, so that dropping it subtracts exactly what was added. Bitmaps
// shared by two entries (a rollup equal to one of its halves) are counted
// twice: the total is an upper estimate. After each query, a tenant that
// alone exceeds the budget drops its unions, then its rollups, then its
// days; then whole tenants are evicted, least recently used first, until
// the total is within the budget. A tenant is never evicted while a query
// holds or waits for it, so a query always finishes with what it built.

// DefaultCacheBytes is the default budget of the day cache: 128 MiB keeps
// a tenant of 1M customers over two years (~100 MiB accounted) or
// thousands of small ones. With the collector's default GOGC the heap may
// reach about twice the live cache before a collection, which keeps the
// service within the Helm chart's default 512Mi memory limit.
const DefaultCacheBytes = 128 << 20

// Estimated heap not seen by GetSizeInBytes: a bitmap's headers, a map
// entry and its node, a tenant's maps, one day's version in stored.
const (
	bitmapOverhead  = 96
	entryOverhead   = 64
	tenantOverhead  = 1024
	dayVersionBytes = 40
)

// bitmapBytes is b's estimated heap. GetSizeInBytes counts the containers'
// contents only; ORed array containers keep spare capacity, and the heap
// measured after filling a tenant's cache was 1.13-1.18 times the plain
// count (100k customers / 1M orders; 25k customers), so a quarter is added.
func bitmapBytes(b *roaring.Bitmap) int64 {
	return int64(b.GetSizeInBytes())*5/4 + bitmapOverhead
}

func nodeBytes(n *node) int64 {
	return entryOverhead + bitmapBytes(n.ones) + bitmapBytes(n.twos) + bitmapBytes(n.firsts) + bitmapBytes(n.seconds)
}

// entry is a cached node or union with the size it was accounted at.
type entry[V any] struct {
	v    V
	size int64
}

// put caches v under k in m (a map of td), accounted at size.
func put[K comparable, V any](td *tenantDays, m map[K]entry[V], k K, v V, size int64) {
	drop(td, m, k)
	m[k] = entry[V]{v: v, size: size}
	td.account(size)
}

// drop removes k from m (a map of td) and its size from the counters.
func drop[K comparable, V any](td *tenantDays, m map[K]entry[V], k K) {
	if e, ok := m[k]; ok {
		delete(m, k)
		td.account(-e.size)
	}
}

// evictReason says what the budget dropped: whole tenants, or parts of a
// tenant that alone exceeded it.
type evictReason uint8

const (
	evictTenant evictReason = iota
	evictUnions
	evictRollups
	evictDays
	evictReasons
)

var evictReasonNames = [evictReasons]string{"tenant", "unions", "rollups", "days"}

// cacheMetrics are the cache's instruments: the accounted size and the
// evictions by reason (tenants for "tenant", entries otherwise).
type cacheMetrics struct {
	evictions metric.Int64Counter
	reasons   [evictReasons]metric.AddOption
}

func newCacheMetrics(m metric.Meter, c *dayCache) (cacheMetrics, error) {
	var cm cacheMetrics
	for r, name := range evictReasonNames {
		cm.reasons[r] = metric.WithAttributes(attribute.String("reason", name))
	}
	var err error
	cm.evictions, err = m.Int64Counter("retain.metrics.cache.evictions",
		metric.WithDescription("Day cache evictions under the byte budget, by reason: tenant (whole tenants, least recently used first), unions, rollups, days (entries of one tenant over the budget alone)."),
		metric.WithUnit("{eviction}"))
	if err != nil {
		return cm, err
	}
	_, err = m.Int64ObservableGauge("retain.metrics.cache.bytes",
		metric.WithDescription("Accounted size of the day cache (decoded day bitmaps, rollups, range unions), an upper estimate."),
		metric.WithUnit("By"),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			o.Observe(c.bytes.Load())
			return nil
		}))
	return cm, err
}

// Option configures a Store.
type Option func(*options)

type options struct {
	cacheBytes int64
	meter      metric.Meter
	log        *slog.Logger
}

// WithCacheBytes sets the day cache's budget in bytes (DefaultCacheBytes
// when not given). 0 keeps nothing beyond the query in progress: answers
// are the same, only slower.
func WithCacheBytes(n int64) Option { return func(o *options) { o.cacheBytes = max(n, 0) } }

// WithMeter exports the cache's size and evictions through m.
func WithMeter(m metric.Meter) Option { return func(o *options) { o.meter = m } }

// WithLogger logs the cache's evictions at debug level.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// acquire returns name's cache, pinned until release: it is the most
// recently used and is not evicted while pinned.
func (c *dayCache) acquire(name string) *tenantDays {
	c.mu.Lock()
	defer c.mu.Unlock()
	td := c.tenants[name]
	if td == nil {
		td = &tenantDays{cache: c, name: name, nodes: map[nodeKey]entry[*node]{}, unions: map[unionKey]entry[*roaring.Bitmap]{}, empty: emptyNode()}
		td.account(tenantOverhead)
		td.lru = c.lru.PushFront(td)
		c.tenants[name] = td
	} else {
		c.lru.MoveToFront(td.lru)
	}
	td.refs++
	return td
}

// release ends a query of td, whose lock the caller holds and which release
// unlocks: td is trimmed if it alone exceeds the budget, then whole idle
// tenants are evicted, least recently used first (td is the most recent),
// until the cache is within the budget.
func (c *dayCache) release(td *tenantDays) {
	var trimmed [evictReasons]int64
	if td.bytes.Load() > c.budget {
		trimmed = td.shrink(c.budget)
	}
	td.mu.Unlock()
	c.mu.Lock()
	td.refs--
	c.lru.MoveToFront(td.lru)
	var evicted []*tenantDays
	for e := c.lru.Back(); e != nil && c.bytes.Load() > c.budget; {
		victim, prev := e.Value.(*tenantDays), e.Prev()
		if victim.refs == 0 {
			// Unpinned: no query holds or waits for its lock, and none can
			// reach it once it is out of the map.
			c.lru.Remove(e)
			delete(c.tenants, victim.name)
			c.bytes.Add(-victim.bytes.Load())
			evicted = append(evicted, victim)
		}
		e = prev
	}
	c.mu.Unlock()
	trimmed[evictTenant] = int64(len(evicted))
	c.report(td.name, trimmed, evicted)
}

// report counts and logs evictions.
func (c *dayCache) report(tenant string, n [evictReasons]int64, evicted []*tenantDays) {
	for r, k := range n {
		if k > 0 {
			c.metrics.evictions.Add(context.Background(), k, c.metrics.reasons[r])
		}
	}
	if !c.log.Enabled(context.Background(), slog.LevelDebug) {
		return
	}
	if n[evictUnions]+n[evictRollups]+n[evictDays] > 0 {
		c.log.Debug("metrics cache: tenant over the budget alone trimmed", "tenant", tenant,
			"unions", n[evictUnions], "rollups", n[evictRollups], "days", n[evictDays], "budget_bytes", c.budget)
	}
	for _, v := range evicted {
		c.log.Debug("metrics cache: least recently used tenant evicted", "tenant", v.name,
			"bytes", v.bytes.Load(), "cache_bytes", c.bytes.Load(), "budget_bytes", c.budget)
	}
}

// shrink drops td's unions, then its rollups, then its days until td is
// within budget, and returns how many entries of each it dropped. The
// caller holds td.mu.
func (td *tenantDays) shrink(budget int64) (n [evictReasons]int64) {
	for k := range td.unions {
		if td.bytes.Load() <= budget {
			return n
		}
		td.dropUnion(k)
		n[evictUnions]++
	}
	for _, reason := range []evictReason{evictRollups, evictDays} {
		for k := range td.nodes {
			if td.bytes.Load() <= budget {
				return n
			}
			if (k.level == 0) == (reason == evictDays) {
				td.dropNode(k)
				n[reason]++
			}
		}
	}
	return n
}

// account adds n bytes to td's size and the cache's total.
func (td *tenantDays) account(n int64) {
	td.bytes.Add(n)
	td.cache.bytes.Add(n)
}

func (td *tenantDays) putNode(k nodeKey, n *node) { put(td, td.nodes, k, n, nodeBytes(n)) }
func (td *tenantDays) dropNode(k nodeKey)         { drop(td, td.nodes, k) }

func (td *tenantDays) putUnion(k unionKey, b *roaring.Bitmap) {
	put(td, td.unions, k, b, entryOverhead+bitmapBytes(b))
}
func (td *tenantDays) dropUnion(k unionKey) { drop(td, td.unions, k) }

func (td *tenantDays) clearUnions() {
	for k := range td.unions {
		td.dropUnion(k)
	}
}

// setStored replaces the versions of td's day rows.
func (td *tenantDays) setStored(stored map[int32]int64) {
	td.account(int64(len(stored)-len(td.stored)) * dayVersionBytes)
	td.stored = stored
}

// newDayCache is an empty cache of budget bytes.
func newDayCache(o options) *dayCache {
	c := &dayCache{tenants: map[string]*tenantDays{}, budget: o.cacheBytes, log: o.log}
	c.lru.Init()
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	m := o.meter
	if m == nil {
		m = noop.NewMeterProvider().Meter("")
	}
	var err error
	if c.metrics, err = newCacheMetrics(m, c); err != nil {
		// An instrument the SDK refuses (a name clash) only loses the
		// metric; the cache works the same.
		c.log.Warn("metrics cache: create metric instruments", "err", err)
		c.metrics, _ = newCacheMetrics(noop.NewMeterProvider().Meter(""), c)
	}
	return c
}
