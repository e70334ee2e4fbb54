package bus

import "context"

// commitHooks are the functions a handler asked to run once its batch's
// transaction has committed.
type commitHooks struct{ fns []func() }

type commitHooksKey struct{}

// withCommitHooks returns ctx carrying a fresh set of hooks for a handler
// that runs in a transaction of the runner (a batch, a replay).
func withCommitHooks(ctx context.Context) (context.Context, *commitHooks) {
	h := &commitHooks{}
	return context.WithValue(ctx, commitHooksKey{}, h), h
}

// reset drops what an attempt that rolled back registered: the next
// attempt registers again.
func (h *commitHooks) reset() { h.fns = nil }

// run calls the hooks, once the transaction has committed.
func (h *commitHooks) run() {
	for _, fn := range h.fns {
		fn()
	}
}

// AfterCommit asks the consumer runner to call fn once the transaction the
// handler runs in has committed, before the batch is acked; fn is dropped
// if the transaction rolls back. It reports whether ctx is a handler's
// context: elsewhere (a transaction of the caller's own) fn is never called.
//
// It is for state a handler keeps outside the database (a cache of rows
// it wrote) that must only ever reflect committed writes. fn runs on the
// worker's goroutine and should be quick.
func AfterCommit(ctx context.Context, fn func()) bool {
	h, ok := ctx.Value(commitHooksKey{}).(*commitHooks)
	if ok {
		h.fns = append(h.fns, fn)
	}
	return ok
}
