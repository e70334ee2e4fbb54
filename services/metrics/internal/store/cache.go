package store

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/RoaringBitmap/roaring/v2"
	"github.com/jackc/pgx/v5"

	"github.com/retainhq/retain/services/metrics/internal/retention"
)

// maxLevel bounds the rollups: a block of 2^12 days is over eleven years,
// more than the longest window (retention.MaxWindow).
const maxLevel = 12

// node is the union of the day bitmaps of one aligned block of 2^level
// days: ones = customers with an order in the block, twos = with two or
// more, firsts and seconds = whose first and second order falls in it.
// Nodes are never modified once built, so readers share them without
// locks.
type node struct {
	ones, twos, firsts, seconds *roaring.Bitmap
}

func (n *node) empty() bool {
	return n.ones.IsEmpty() && n.twos.IsEmpty() && n.firsts.IsEmpty() && n.seconds.IsEmpty()
}

func emptyNode() *node {
	return &node{ones: roaring.New(), twos: roaring.New(), firsts: roaring.New(), seconds: roaring.New()}
}

// combine is the node of two disjoint stretches of days: a customer has two
// orders in the union if they have two in one of them or one in each.
func combine(a, b *node) *node {
	switch {
	case b.empty():
		return a
	case a.empty():
		return b
	}
	return &node{
		ones:    roaring.Or(a.ones, b.ones),
		twos:    roaring.FastOr(a.twos, b.twos, roaring.And(a.ones, b.ones)),
		firsts:  roaring.Or(a.firsts, b.firsts),
		seconds: roaring.Or(a.seconds, b.seconds),
	}
}

type nodeKey struct {
	level int8
	index int32 // first day >> level
}

// dayCache keeps, per tenant, the decoded day bitmaps and the power-of-two
// rollups built from them, so a warm query ORs a few blocks instead of
// reading and decoding every day of its windows. Its size is bounded by
// budget (budget.go).
//
// Locks: a query takes mu (acquire), then the tenant's lock for the whole
// query, and mu again after unlocking it (release); mu is never held while
// waiting for a tenant's lock, so no two goroutines wait for each other.
type dayCache struct {
	budget  int64
	bytes   atomic.Int64 // accounted size of every tenant's cache
	metrics cacheMetrics
	log     *slog.Logger

	mu      sync.Mutex
	tenants map[string]*tenantDays
	lru     list.List // of *tenantDays, most recently used first
}

// tenantDays is one tenant's cache. Its lock is held for a whole query, so
// a query validates and extends it against its own snapshot.
type tenantDays struct {
	cache *dayCache
	name  string
	// refs (queries holding or waiting for mu) and lru are guarded by
	// cache.mu; the tenant is evicted whole only when refs is 0.
	refs int
	lru  *list.Element
	// bytes is the accounted size of the entries below; changed under mu.
	bytes atomic.Int64

	mu sync.Mutex
	// validated: stored and nodes agree with tenant_state.version.
	validated bool
	version   int64
	// stored is the version of every day_buyers row of the tenant.
	stored map[int32]int64
	nodes  map[nodeKey]entry[*node]
	empty  *node
	// unions caches the union of one set over a range of whole days (a
	// window, a month of a cohort table), so a repeated query ORs nothing.
	unions map[unionKey]entry[*roaring.Bitmap]
}

// set names one of a node's bitmaps.
type set uint8

const (
	setOnes set = iota
	setFirsts
	setSeconds
	// setTwos over a range is the customers with two orders in it, which
	// takes combining the nodes, not only ORing them.
	setTwos
)

func (n *node) set(s set) *roaring.Bitmap {
	switch s {
	case setFirsts:
		return n.firsts
	case setSeconds:
		return n.seconds
	case setTwos:
		return n.twos
	}
	return n.ones
}

type unionKey struct {
	from, to int32
	set      set
}

// maxUnions bounds the range cache; when full it starts again (ranges are
// cheap to rebuild from the nodes).
const maxUnions = 1024

// revalidate brings the cache in line with tx's snapshot: nothing to do
// when the tenant's version has not moved (one primary-key read);
// otherwise the rows' versions are compared and the changed days and every
// block holding them are dropped.
func (td *tenantDays) revalidate(ctx context.Context, tx pgx.Tx, tenant string) error {
	var version int64
	err := tx.QueryRow(ctx, `SELECT version FROM tenant_state WHERE tenant = $1`, tenant).Scan(&version)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("read tenant version: %w", err)
	}
	if td.validated && version == td.version {
		return nil
	}
	rows, err := tx.Query(ctx, `SELECT day - DATE '1970-01-01', version FROM day_buyers WHERE tenant = $1`, tenant)
	if err != nil {
		return fmt.Errorf("read day versions: %w", err)
	}
	stored := make(map[int32]int64, len(td.stored))
	var (
		day int32
		v   int64
	)
	if _, err := pgx.ForEachRow(rows, []any{&day, &v}, func() error {
		stored[day] = v
		return nil
	}); err != nil {
		return fmt.Errorf("read day versions: %w", err)
	}
	for d, v := range stored {
		if old, ok := td.stored[d]; !ok || old != v {
			td.invalidate(d)
		}
	}
	for d := range td.stored {
		if _, ok := stored[d]; !ok {
			td.invalidate(d)
		}
	}
	td.setStored(stored)
	td.version, td.validated = version, true
	return nil
}

func (td *tenantDays) invalidate(day int32) {
	for k := int8(0); k <= maxLevel; k++ {
		td.dropNode(nodeKey{k, day >> k})
	}
	for k := range td.unions {
		if k.from <= day && day < k.to {
			td.dropUnion(k)
		}
	}
}

// unionOf is the union of one set over the whole days of each range.
func (td *tenantDays) unionOf(ctx context.Context, tx pgx.Tx, tenant string, s set, ranges ...[2]int32) ([]*roaring.Bitmap, error) {
	out := make([]*roaring.Bitmap, len(ranges))
	var missing [][2]int32
	var at []int
	for i, r := range ranges {
		if u, ok := td.unions[unionKey{r[0], r[1], s}]; ok {
			out[i] = u.v
		} else {
			missing, at = append(missing, r), append(at, i)
		}
	}
	if len(missing) == 0 {
		return out, nil
	}
	nodes, err := td.cover(ctx, tx, tenant, missing...)
	if err != nil {
		return nil, err
	}
	if len(td.unions)+len(missing) > maxUnions {
		td.clearUnions()
	}
	for j, ns := range nodes {
		var u *roaring.Bitmap
		if s == setTwos {
			folded := td.empty
			for _, n := range ns {
				folded = combine(folded, n)
			}
			u = folded.twos
		} else {
			parts := make([]*roaring.Bitmap, len(ns))
			for k, n := range ns {
				parts[k] = n.set(s)
			}
			u = roaring.FastOr(parts...)
		}
		td.putUnion(unionKey{missing[j][0], missing[j][1], s}, u)
		out[at[j]] = u
	}
	return out, nil
}

// blocks decomposes the days [d0, d1) into the fewest aligned blocks.
func blocks(d0, d1 int32) []nodeKey {
	var out []nodeKey
	for d0 < d1 {
		k := int8(0)
		for k < maxLevel {
			size := int32(1) << (k + 1)
			if d0&(size-1) != 0 || d1-d0 < size {
				break
			}
			k++
		}
		out = append(out, nodeKey{k, d0 >> k})
		d0 += 1 << k
	}
	return out
}

// cover returns, for each range of days, the nodes that make it up, loading
// the day rows the missing nodes need in one read.
func (td *tenantDays) cover(ctx context.Context, tx pgx.Tx, tenant string, ranges ...[2]int32) ([][]*node, error) {
	keys := make([][]nodeKey, len(ranges))
	var missing []int32
	seen := map[int32]bool{}
	for i, r := range ranges {
		keys[i] = blocks(r[0], r[1])
		for _, k := range keys[i] {
			if td.cached(k) {
				continue
			}
			first := k.index << k.level
			for d := first; d < first+1<<k.level; d++ {
				if _, ok := td.stored[d]; ok && !td.cached(nodeKey{0, d}) && !seen[d] {
					seen[d] = true
					missing = append(missing, d)
				}
			}
		}
	}
	if len(missing) > 0 {
		rows, err := readDayRows(ctx, tx, tenant, missing)
		if err != nil {
			return nil, err
		}
		for _, d := range missing {
			r := rows[d]
			if r == nil || r.version != td.stored[d] {
				return nil, fmt.Errorf("day %s: changed while read", dayStart(d).Format(time.DateOnly))
			}
			td.putNode(nodeKey{0, d}, &node{ones: r.ge1, twos: r.ge2, firsts: r.firsts, seconds: r.seconds})
		}
	}
	out := make([][]*node, len(ranges))
	for i := range ranges {
		for _, k := range keys[i] {
			out[i] = append(out[i], td.node(k))
		}
	}
	return out, nil
}

// node returns the cached node of k, building it from its halves; the day
// rows it needs are loaded (cover).
func (td *tenantDays) node(k nodeKey) *node {
	if e, ok := td.nodes[k]; ok {
		return e.v
	}
	if k.level == 0 {
		// A day without a row has no buyers.
		return td.empty
	}
	n := combine(td.node(nodeKey{k.level - 1, k.index << 1}), td.node(nodeKey{k.level - 1, k.index<<1 | 1}))
	td.putNode(k, n)
	return n
}

func (td *tenantDays) cached(k nodeKey) bool {
	_, ok := td.nodes[k]
	return ok
}

// span is the first and last day with a row, ok false when there is none.
func (td *tenantDays) span() (first, last int32, ok bool) {
	for d := range td.stored {
		if !ok || d < first {
			first = d
		}
		if !ok || d > last {
			last = d
		}
		ok = true
	}
	return first, last, ok
}

// dayView answers set questions about instants from one tenant's cache,
// within one snapshot: whole days from the day bitmaps, partial edge days
// from the facts.
type dayView struct {
	ctx    context.Context
	tx     pgx.Tx
	tenant string
	td     *tenantDays
}

// fold is the ones and twos of the instants [a, b): the whole days from
// the cache, the partial edge days from the orders.
func (v *dayView) fold(a, b time.Time) (*node, error) {
	d0, d1, edges := splitDays(a, b)
	out := v.td.empty
	if d0 < d1 {
		ones, err := v.td.unionOf(v.ctx, v.tx, v.tenant, setOnes, [2]int32{d0, d1})
		if err != nil {
			return nil, err
		}
		twos, err := v.td.unionOf(v.ctx, v.tx, v.tenant, setTwos, [2]int32{d0, d1})
		if err != nil {
			return nil, err
		}
		out = &node{ones: ones[0], twos: twos[0], firsts: roaring.New(), seconds: roaring.New()}
	}
	if len(edges) > 0 {
		n, err := v.edges(edges)
		if err != nil {
			return nil, err
		}
		out = combine(out, n)
	}
	return out, nil
}

// union is one of the node's sets over the instants [a, b) (ones, firsts
// or seconds), without combining the rest.
func (v *dayView) union(a, b time.Time, s set) (*roaring.Bitmap, error) {
	d0, d1, edges := splitDays(a, b)
	var parts []*roaring.Bitmap
	if d0 < d1 {
		whole, err := v.td.unionOf(v.ctx, v.tx, v.tenant, s, [2]int32{d0, d1})
		if err != nil {
			return nil, err
		}
		parts = append(parts, whole[0])
	}
	if len(edges) > 0 {
		n, err := v.edges(edges)
		if err != nil {
			return nil, err
		}
		parts = append(parts, n.set(s))
	}
	switch len(parts) {
	case 0:
		return roaring.New(), nil
	case 1:
		return parts[0], nil
	}
	return roaring.FastOr(parts...), nil
}

// edges reads the node of partial days from the facts, by instant.
func (v *dayView) edges(ps []retention.Period) (*node, error) {
	los, his := make([]time.Time, len(ps)), make([]time.Time, len(ps))
	for i, p := range ps {
		los[i], his[i] = p.From, p.To
	}
	n := emptyNode()
	rows, err := v.tx.Query(v.ctx, `
		SELECT o.cseq, count(*) FROM unnest($2::timestamptz[], $3::timestamptz[]) AS e(lo, hi)
		CROSS JOIN LATERAL (
			SELECT cseq FROM orders WHERE tenant = $1 AND placed_at >= e.lo AND placed_at < e.hi) o
		GROUP BY o.cseq`, v.tenant, los, his)
	if err != nil {
		return nil, fmt.Errorf("read buyers of partial days: %w", err)
	}
	var (
		cseq  int32
		count int64
	)
	if _, err := pgx.ForEachRow(rows, []any{&cseq, &count}, func() error {
		n.ones.Add(uint32(cseq))
		if count >= 2 {
			n.twos.Add(uint32(cseq))
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("read buyers of partial days: %w", err)
	}
	rows, err = v.tx.Query(v.ctx, `
		SELECT c.cseq, c.first_order_at >= e.lo AND c.first_order_at < e.hi,
		       coalesce(c.second_order_at >= e.lo AND c.second_order_at < e.hi, false)
		FROM unnest($2::timestamptz[], $3::timestamptz[]) AS e(lo, hi)
		CROSS JOIN LATERAL (
			SELECT cseq, first_order_at, second_order_at FROM customers
			WHERE tenant = $1 AND first_order_at >= e.lo AND first_order_at < e.hi
			UNION ALL
			SELECT cseq, first_order_at, second_order_at FROM customers
			WHERE tenant = $1 AND second_order_at >= e.lo AND second_order_at < e.hi
			  AND NOT (first_order_at >= e.lo AND first_order_at < e.hi)) c`, v.tenant, los, his)
	if err != nil {
		return nil, fmt.Errorf("read first orders of partial days: %w", err)
	}
	var isFirst, isSecond bool
	if _, err := pgx.ForEachRow(rows, []any{&cseq, &isFirst, &isSecond}, func() error {
		if isFirst {
			n.firsts.Add(uint32(cseq))
		}
		if isSecond {
			n.seconds.Add(uint32(cseq))
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("read first orders of partial days: %w", err)
	}
	return n, nil
}
