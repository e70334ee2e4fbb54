package app

// takeOverGrace is how long after it starts, and after its database
// answers again following an outage, a replica leaves other attempts'
// lapsed leases alone (it still sends what is queued); a lease that lapsed
// more than a whole lease ago is taken over whatever, so that a database
// whose connections keep dropping (each drop ends an outage) cannot hold a
// crashed send back for good. The lease of an
// attempt whose replica holds a provider's answer (finish) may lapse
// during a long outage; that replica saves the answer within holdRetry of
// the database answering, and a replica that took the delivery over first
// would send the message again. The restarted or reconnected replicas are
// exactly those that may have missed the answer being held.
const takeOverGrace = 5 * holdRetry

// mayTakeOver reports whether a sender claim now may take over leases
// that lapsed less than a lease ago: not while the sender's database is
// away (the pass that first reaches it again is the one that would meet
// the leases that lapsed during the outage, before their holders saved
// their answers), nor within takeOverGrace of the engine's start or of
// the outage's end. The grace runs on the engine's clock (Config.Now), as
// the leases do, so that tests can move it instead of waiting for it.
func (e *Engine) mayTakeOver() bool {
	quiet := e.started
	if t := e.sendOutage.LastEnded(); t.After(quiet) {
		quiet = t
	}
	return !e.sendOutage.Away() && e.cfg.Now().Sub(quiet) >= takeOverGrace
}
