package commit

// Queued is how many requests wait in the queue, for tests that must have
// them all in before Run starts.
func (c *Committer) Queued() int { return len(c.queue) }
