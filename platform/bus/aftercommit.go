package bus

import "context"

// commitHooks are the functions a handler asked to run once its batch's
// transaction has committed.
type commitHooks struct{ fns []func() }

type commitHooksKey struct{}

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
