// Package simulate generates a deterministic, realistic synthetic shop: customer
// profiles, orders, refunds, support tickets and survey answers, as Retain
// events in event-time order. It is used for demos, tests and benchmarks.
//
// The purchase process is BG/NBD ("buy till you die", Fader, Hardie and Lee
// 2005): each customer buys at a Poisson rate lambda ~ Gamma(r, alpha) and,
// after every repeat purchase, leaves for good with probability p ~ Beta(a, b).
// Around that hidden dropout the generator plants the signals a churn model is
// meant to find: more support tickets (price complaints above all), worse NPS
// and CSAT, more refunds. The hidden truth is available per customer
// (Shop.Customers, Shop.Customer) so tests and benchmarks can score what the
// services infer.
//
// The same Config (seed included) always gives the same events, byte for byte
// (on one CPU architecture: floating-point library routines may differ in the
// last bit between architectures).
//
// Events are generated lazily, customer by customer, and merged in time order,
// so memory grows with the customers active at a time, never with the number
// of events: a million customers and ten million orders stream in ~70 MB.
package simulate
