package bus

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// NamedConsumer is a short-lived consumer of a fixed name: the backlog
// probes (<durable>-probe) and metrics's rebuild replay. A fixed name is
// one the NATS permissions of a service can name, where a generated one
// needs a wildcard that names every consumer of the stream, and with it
// every other service's durable (decision 0044).
type NamedConsumer struct {
	Stream string
	// Config is the consumer, its Name set. It is created as a new
	// consumer, never an update of one of that name: a Description of
	// its own keeps it from matching another's.
	Config jetstream.ConsumerConfig
	// Taken is called when the name is held by another consumer (of
	// another replica, or left by a process that stopped), to delete it
	// or wait; the creation is then tried again, Attempts times in all
	// (0: until ctx ends).
	Taken    func(ctx context.Context) error
	Attempts int
	// DeleteTimeout bounds the deletion once used: a NATS that does not
	// allow it answers with silence.
	DeleteTimeout time.Duration
	// Deleted, when set, is told how the deletion went (nil: gone).
	Deleted func(error)
}

// namedTurns makes the users of one consumer name in this process take
// turns (stream.name -> chan struct{} of one slot), rather than taking
// the name from each other.
var namedTurns sync.Map

// UseNamedConsumer creates n's consumer, in its turn, runs use with it,
// and deletes it whatever use returned (even once ctx has ended), telling
// n.Deleted. It returns the creation's or use's error.
func (b *Bus) UseNamedConsumer(ctx context.Context, n NamedConsumer, use func(jetstream.Consumer) error) error {
	name := n.Config.Name
	turn, _ := namedTurns.LoadOrStore(n.Stream+"."+name, make(chan struct{}, 1))
	select {
	case turn.(chan struct{}) <- struct{}{}:
		defer func() { <-turn.(chan struct{}) }()
	case <-ctx.Done():
		return ctx.Err()
	}
	var (
		cons jetstream.Consumer
		err  error
	)
	for attempt := 1; ; attempt++ {
		cons, err = b.JS.CreateConsumer(ctx, n.Stream, n.Config)
		if !errors.Is(err, jetstream.ErrConsumerExists) || attempt == n.Attempts {
			break
		}
		if terr := n.Taken(ctx); terr != nil {
			return fmt.Errorf("consumer %s taken: %w", name, terr)
		}
	}
	if err != nil {
		return err
	}
	defer func() {
		derr := b.DeleteNamedConsumer(context.WithoutCancel(ctx), n.Stream, name, n.DeleteTimeout)
		if n.Deleted != nil {
			n.Deleted(derr)
		}
	}()
	return use(cons)
}

// DeleteNamedConsumer deletes the consumer called name on stream, waiting
// at most timeout; one already gone (the server's, once inactive, or
// another replica's deletion) is no error.
func (b *Bus) DeleteNamedConsumer(ctx context.Context, stream, name string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	err := b.JS.DeleteConsumer(ctx, stream, name)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil
	}
	return err
}
