package store

// CachedCustomers is what the customer cache holds of tenant: the version
// its rows are valid at and each customer's number, ok false when it holds
// nothing of the tenant. For the tests of package store_test, which drive
// the store from the consumer package (a rebuild).
func CachedCustomers(s *Store, tenant string) (version int64, cseqs map[string]uint32, ok bool) {
	c := s.customers
	c.mu.Lock()
	defer c.mu.Unlock()
	tc := c.tenants[tenant]
	if tc == nil {
		return 0, nil, false
	}
	cseqs = make(map[string]uint32, len(tc.rows))
	for id, r := range tc.rows {
		cseqs[id] = r.cseq
	}
	return tc.version, cseqs, true
}
