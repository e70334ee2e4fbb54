// Package model is the pure math core of the churn signal: the BG/NBD
// ("beta-geometric / negative binomial distribution") purchase model of
// Fader, Hardie & Lee (2005), "Counting Your Customers the Easy Way: An
// Alternative to the Pareto/NBD Model", Marketing Science 24(2), 275-284.
//
// # The model
//
// While alive, a customer buys at the times of a Poisson process with rate
// λ. Right after each repeat purchase the customer drops out for good with
// probability p (the first purchase, at time 0, is never a dropout point).
// Across customers λ ~ Gamma(r, α) (shape r, rate α) and p ~ Beta(a, b),
// independently. Time is in weeks.
//
// A customer's calibration history is summarised by three numbers (Summary):
// x repeat purchases, the time t_x of the last one and the age T at the end of
// calibration, both measured from the first purchase. Purchases on the same
// calendar day are one transaction, as in the paper.
//
// # Likelihood
//
// Integrating λ and p out gives (paper, eq. 6)
//
//	L = B(a,b+x)/B(a,b) · Γ(r+x)α^r / (Γ(r)(α+T)^(r+x))
//	  + δ(x>0) · B(a+1,b+x-1)/B(a,b) · Γ(r+x)α^r / (Γ(r)(α+t_x)^(r+x))
//
// Evaluated literally, (α+T)^(r+x) overflows for the hundreds of purchases of
// a frequent buyer (the "#NUM!" problem of Fader & Hardie's note). Factoring
// the first term out and using B(a+1,b+x-1)/B(a,b+x) = a/(b+x-1) gives
//
//	ln L = lnΓ(r+x) - lnΓ(r) + r ln α + lnB(a,b+x) - lnB(a,b) - (r+x) ln(α+T)
//	     + δ(x>0) · softplus(D),
//	D    = ln a - ln(b+x-1) + (r+x)(ln(α+T) - ln(α+t_x)),
//
// where softplus(D) = ln(1+e^D) is evaluated without ever forming e^D for
// D > 0. Everything stays O(ln) in size however large x grows.
//
// # Fitting
//
// Customers with identical (x, t_x, T) contribute identical terms, so they are
// grouped and weighted by their count (Aggregate); the terms that depend on x
// only (log-gammas, digammas) are computed once per distinct x and the
// logarithms once per distinct T and t_x. Those terms are differences such
// as lnΓ(b+x) - lnΓ(b), about x·ln b, which are computed as such from
// Stirling's series rather than by subtracting two numbers of size b·ln b:
// a young shop's fit runs out to b in the billions. The maximum likelihood estimate is
// found by BFGS over the log-parameters (which keeps all four positive without
// constraints) with the analytic gradient, from several starting points; the
// best optimum wins and its convergence is reported.
//
// # Predictions
//
// Given the history, the posterior probability that the customer is alive is
// P(alive) = 1/(1+e^D) (1 for x = 0), and given alive, λ ~ Gamma(r+x, α+T) and
// p ~ Beta(a, b+x). From these:
//
//   - P(no purchase in the next h weeks). A dead customer never buys. An alive
//     one can only drop out right after a purchase, so "no purchase in h" is
//     exactly "the next inter-purchase time exceeds h", probability e^(-λh);
//     averaging over the posterior of λ:
//     P0(h) = 1 - P(alive) + P(alive)·((α+T)/(α+T+h))^(r+x).
//   - Expected purchases in the next h weeks (paper, eq. 10). Given alive, λ
//     and p, E[Y(h)] = (1 - e^(-λph))/p; averaging over λ and then p gives a
//     Gaussian hypergeometric function, evaluated here in an
//     Euler-transformed form that is free of the a = 1 singularity and
//     converges quickly unless h >> α+T or Beta(a, b) is concentrated (a and
//     b in the millions, as a young shop's fit has them: the dropout
//     probability all but fixed); there a double-exponential quadrature of
//     the p-integral, centred on the spike, takes over (see expectedIfAlive).
//
// Note that P(alive) alone ranks churn badly: every one-time buyer (x = 0) has
// P(alive) = 1 under the BG/NBD. Churn risk should use P0(h) or E[Y(h)].
package model
