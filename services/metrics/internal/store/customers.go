package store

import (
	"math"
	"sync"
	"time"
)

// maxCachedCustomers bounds the customer cache: about 25 MiB of heap, the
// recent buyers of a large shop or every customer of many small ones.
const maxCachedCustomers = 1 << 18

// customerCache keeps, per tenant, the customers rows (number, first and
// second order) this process has read or written, as of the tenant's
// version it last committed, so that a batch reads from Postgres only the
// customers it lacks: in a live shop most buyers have bought before, and
// their lookup was a fifth of a batch's time.
//
// Every writer of customers moves the tenant's version on (Apply, a bulk
// build, a reset), and a batch reads the version in its first round trip:
// when it is not the cache's, the tenant's entries are read again from the
// table. Entries are added only once the batch's transaction has
// committed (bus.AfterCommit), so the cache never holds a write that
// rolled back.
type customerCache struct {
	mu      sync.Mutex
	max     int
	size    int
	tenants map[string]*tenantCustomers
}

type tenantCustomers struct {
	version int64
	rows    map[string]cachedCustomer
}

// cachedCustomer is a customers row; instants in Unix microseconds (the
// table's precision), noInstant when the customer has fewer orders.
type cachedCustomer struct {
	cseq          uint32
	first, second int64
}

const noInstant = math.MinInt64

func newCustomerCache(max int) *customerCache {
	return &customerCache{max: max, tenants: map[string]*tenantCustomers{}}
}

func micros(t time.Time) int64 {
	if t.IsZero() {
		return noInstant
	}
	return t.UnixMicro()
}

func instantOf(us int64) time.Time {
	if us == noInstant {
		return time.Time{}
	}
	return time.UnixMicro(us).UTC()
}

// lookup returns the cached rows of the named customers and the version
// they are valid at; ok is false when nothing of the tenant is cached.
func (c *customerCache) lookup(tenant string, names []string) (version int64, hits map[string]cachedCustomer, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	tc := c.tenants[tenant]
	if tc == nil {
		return 0, nil, false
	}
	hits = make(map[string]cachedCustomer, len(names))
	for _, n := range names {
		if r, found := tc.rows[n]; found {
			hits[n] = r
		}
	}
	return tc.version, hits, true
}

// commit records the rows a committed batch left, which read the tenant at
// version base and wrote version. The tenant's older entries are kept only
// when they were valid at base; a later batch's entries win.
func (c *customerCache) commit(tenant string, base, version int64, rows map[string]cachedCustomer) {
	c.mu.Lock()
	defer c.mu.Unlock()
	tc := c.tenants[tenant]
	switch {
	case tc != nil && tc.version > base:
		return
	case tc == nil || tc.version < base:
		if tc != nil {
			c.size -= len(tc.rows)
		}
		tc = &tenantCustomers{rows: make(map[string]cachedCustomer, len(rows))}
		c.tenants[tenant] = tc
	}
	for id, r := range rows {
		if _, ok := tc.rows[id]; !ok {
			c.size++
		}
		tc.rows[id] = r
	}
	tc.version = version
	c.evict(tenant)
}

// evict brings the cache back within max: other tenants go first, whole;
// then the tenant's own rows, arbitrary ones, down to three quarters of
// max so that a shop larger than the cache does not evict on every batch.
func (c *customerCache) evict(keep string) {
	if c.size <= c.max {
		return
	}
	for t, tc := range c.tenants {
		if t != keep {
			c.size -= len(tc.rows)
			delete(c.tenants, t)
			if c.size <= c.max {
				return
			}
		}
	}
	tc := c.tenants[keep]
	for id := range tc.rows {
		if c.size <= c.max*3/4 {
			return
		}
		delete(tc.rows, id)
		c.size--
	}
}
