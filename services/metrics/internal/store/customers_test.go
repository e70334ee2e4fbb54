package store

import (
	"fmt"
	"testing"
	"time"
)

func TestCustomerCacheVersions(t *testing.T) {
	c := newCustomerCache(100)
	row := func(cseq uint32) cachedCustomer {
		return cachedCustomer{cseq: cseq, first: micros(time.Date(2025, 1, 2, 3, 4, 5, 6000, time.UTC)), second: noInstant}
	}
	if _, _, ok := c.lookup("t", []string{"a"}); ok {
		t.Fatal("an empty cache claims a tenant")
	}
	// A batch that read version 4 and wrote 5.
	c.commit("t", 4, 5, map[string]cachedCustomer{"a": row(1), "b": row(2)})
	v, hits, ok := c.lookup("t", []string{"a", "c"})
	if !ok || v != 5 || len(hits) != 1 || hits["a"] != row(1) {
		t.Fatalf("lookup = %d %v %v, want version 5 with a", v, hits, ok)
	}
	// The next batch read 5 (valid): entries merge.
	c.commit("t", 5, 6, map[string]cachedCustomer{"c": row(3)})
	if v, hits, _ := c.lookup("t", []string{"a", "c"}); v != 6 || len(hits) != 2 {
		t.Fatalf("after a valid batch: version %d, %d hits, want 6 and 2", v, len(hits))
	}
	// A batch that read 9 (someone else wrote 7-9): the old entries go.
	c.commit("t", 9, 10, map[string]cachedCustomer{"d": row(4)})
	if v, hits, _ := c.lookup("t", []string{"a", "c", "d"}); v != 10 || len(hits) != 1 || c.size != 1 {
		t.Fatalf("after another writer: version %d, hits %v, size %d, want 10, only d, 1", v, hits, c.size)
	}
	// A late hook of a batch older than what is cached changes nothing.
	c.commit("t", 8, 9, map[string]cachedCustomer{"e": row(5)})
	if v, hits, _ := c.lookup("t", []string{"d", "e"}); v != 10 || len(hits) != 1 {
		t.Fatalf("a stale commit changed the cache: version %d, hits %v", v, hits)
	}
	if got := instantOf(row(1).first); !got.Equal(time.Date(2025, 1, 2, 3, 4, 5, 6000, time.UTC)) || !instantOf(noInstant).IsZero() {
		t.Fatalf("instants do not round-trip: %v", got)
	}
}

func TestCustomerCacheStaysWithinItsBound(t *testing.T) {
	c := newCustomerCache(100)
	rows := func(prefix string, n int) map[string]cachedCustomer {
		m := map[string]cachedCustomer{}
		for i := range n {
			m[fmt.Sprintf("%s%d", prefix, i)] = cachedCustomer{cseq: uint32(i), first: noInstant, second: noInstant}
		}
		return m
	}
	c.commit("small", 0, 1, rows("s", 30))
	c.commit("big", 0, 1, rows("b", 90))
	if c.size > 100 || c.tenants["small"] != nil || len(c.tenants["big"].rows) != 90 {
		t.Fatalf("size %d, small cached %v: other tenants should go first", c.size, c.tenants["small"] != nil)
	}
	c.commit("big", 1, 2, rows("c", 50))
	if c.size > 75 || c.size != len(c.tenants["big"].rows) {
		t.Fatalf("size %d (counted) vs %d (held), want at most 75", c.size, len(c.tenants["big"].rows))
	}
}
