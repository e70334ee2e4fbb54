package pg

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Growth statistics refreshes start after this many rows applied and stop
// doubling past the last threshold, where autovacuum's own analyze
// threshold (10% of the table) keeps up.
const (
	firstAnalyzeAt = 1000
	lastAnalyzeAt  = 1 << 22
)

// GrowthAnalyzer refreshes the planner statistics of tables that a
// process fills from empty (a fresh service, an import of a shop's
// history). Autovacuum analyzes at most once a minute and only after 10%
// of a table changed, so for a table growing from nothing the planner
// keeps believing it tiny and joins a batch to every row of it instead of
// probing the indexes: consumers then run about 3x slower than on analyzed
// tables. The analyzer runs ANALYZE when the rows applied by this process
// reach 1k, 2k, 4k, ... up to about 4M.
//
// The refresh runs in the background on its own pool connection, one at a
// time: inside the caller's transaction it would hold the batch (and every
// message behind it) for the length of an ANALYZE, which is what a p99
// latency sees.
type GrowthAnalyzer struct {
	pool    *pgxpool.Pool
	log     *slog.Logger
	stmt    string
	applied atomic.Int64
	next    atomic.Int64
	running sync.WaitGroup
}

// NewGrowthAnalyzer returns an analyzer of targets on pool. A target is a
// table, optionally with the columns whose statistics the plans depend on
// ("enrollments (customer_id)"): the row count is refreshed either way, and
// fewer columns make each ANALYZE cheaper. Targets are trusted SQL from
// the caller, never outside input.
func NewGrowthAnalyzer(pool *pgxpool.Pool, log *slog.Logger, targets ...string) *GrowthAnalyzer {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &GrowthAnalyzer{pool: pool, log: log, stmt: "ANALYZE " + strings.Join(targets, ", ")}
	a.next.Store(firstAnalyzeAt)
	return a
}

// Applied counts n more rows (or events) applied and starts a refresh when
// the count crosses the next threshold. It never blocks.
func (a *GrowthAnalyzer) Applied(n int) {
	total := a.applied.Add(int64(n))
	at := a.next.Load()
	if total < at || at > lastAnalyzeAt || !a.next.CompareAndSwap(at, 2*total) {
		return
	}
	a.running.Add(1)
	go func() {
		defer a.running.Done()
		// Not the caller's context: the refresh outlives the batch that
		// started it. A shutdown closing the pool waits for it (seconds at
		// most) or makes it fail harmlessly.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := a.pool.Exec(ctx, a.stmt); err != nil {
			a.log.Warn("refresh planner statistics", "statement", a.stmt, "error", err)
		}
	}()
}

// Wait returns once no refresh is running (shutdown, tests).
func (a *GrowthAnalyzer) Wait() { a.running.Wait() }
