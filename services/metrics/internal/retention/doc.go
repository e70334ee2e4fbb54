// Package retention is the pure domain core of the metrics service: every
// figure Retain reports (retention, churn, repeat purchase, cohorts, NPS and
// CSAT, RFM, top customers, sales) defined once, from plain inputs, with no
// I/O. The RFM scoring rules and segments live in the public package
// services/metrics/rfm, which the campaign service shares.
//
// Each figure comes in two halves so the store can choose where the counting
// happens:
//
//   - a value that holds the exact counts behind the figure (RetentionCounts,
//     RepeatCounts, CohortCell, NPSTally, Sales, ...) and derives the rates from
//     them. The store fills these from its maintained aggregates.
//   - a reference function that computes the same counts from raw facts by
//     plain loops (CountRetention, CountRepeat, CohortCells, ...). Tests, the
//     rebuild check and the slow fallback paths use it.
//
// # Definitions
//
// A customer is anyone with at least one order. All instants are event times
// in UTC. The activity window W (DefaultWindow is 90 days) defines who is
// active at instant t: a customer with an order in [t-W, t). The interval is
// half-open on purpose: an order exactly at t-W counts, an order exactly at t
// does not (it makes the customer active just after t).
//
// For a period [from, to): S = customers active at from, E = customers active
// at to, N = customers whose first order is in [from, to). Then
//
//	CRR              = (E - N) / S x 100   (the textbook formula)
//	retained         = |S and E|
//	churned          = |S not in E|
//	reactivated      = in E, not in S, not new
//	churn rate       = churned / S x 100
//	lost per acquired = churned / N x 100   (a ratio some shops use; labelled)
//
// A rate whose denominator is zero is undefined: Ratio.Percent reports ok =
// false instead of NaN or Inf, and the API shows "no figure".
//
// # Money
//
// Money is int64 minor units of one currency; floats never hold money.
// Callers must not mix currencies in one call. A refund corrects the order it
// refunds (net order value = total - refunds, never below zero), so revenue,
// AOV, cohort revenue, RFM monetary and top customers all move with the
// order's instant: a late refund corrects the order's period exactly like a
// late order does. Refunds change revenue only, never activity or order
// counts: a refunded order was still placed.
//
// # Input hygiene
//
// Facts may arrive twice and in any order. NewLedger deduplicates orders by
// order id and refunds by refund id and puts everything in a canonical order,
// so every figure is a function of the set of facts, not of their arrival.
package retention
