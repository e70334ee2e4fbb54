package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// pullAnswerWait is how long pullNoWait waits for the server's next
// message. A no-wait request is answered at once, to the end (a status, or
// the batch complete); silence means the connection is in trouble. It is
// the wait nats.go's FetchNoWait allows.
const pullAnswerWait = time.Second

// pullRequest is JetStream's request for the next messages of a pull
// consumer ($JS.API.CONSUMER.MSG.NEXT.<stream>.<consumer>).
type pullRequest struct {
	Batch    int  `json:"batch"`
	MaxBytes int  `json:"max_bytes,omitempty"`
	NoWait   bool `json:"no_wait,omitempty"`
}

// pullNoWait takes up to n messages, and at most maxBytes bytes of them as
// NATS counts them (subject, reply, headers, data), of what the consumer
// has for delivery now, without waiting for more. nats.go's jetstream
// package (v1.55) bounds only a waiting Fetch in bytes (FetchMaxBytes), and
// a waiting fetch holds a partial batch back until it expires; so this
// sends the request the server takes for both, no_wait and max_bytes.
//
// The server ends the request with 409 "Message Size Exceeds MaxBytes"
// when the next message does not fit in what is left of maxBytes, having
// delivered what did. That is not an error: the message waits for the next
// fetch, and one larger than maxBytes on its own is for a fetch of one
// message (see fetch), which no byte bound holds back.
//
// A consumer an operator gave a MaxRequestBatch or MaxRequestMaxBytes
// below the batch refuses the request whole (409 "Exceeded ..."): it is
// asked again within the consumer's limit, which later requests keep
// to (see requestCaps), rather than refused for ever.
//
// Like FetchNoWait it is not canceled by a context: a message the server
// sent to an inbox no longer read is only redelivered after AckWait.
func (c *Consumer) pullNoWait(n, maxBytes int) ([]jetstream.Msg, error) {
	for {
		n, maxBytes = c.caps.within(n, maxBytes)
		msgs, refused, err := c.pullOnce(n, maxBytes)
		if refused == nil || !c.caps.lower(*refused, c.log) {
			return msgs, err
		}
	}
}

// pullOnce is one request of pullNoWait; refused is the consumer's limit
// that refused it whole, if one did.
func (c *Consumer) pullOnce(n, maxBytes int) ([]jetstream.Msg, *requestLimit, error) {
	nc := c.bus.NC
	inbox := nc.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return nil, nil, fmt.Errorf("bus: pull: %w", err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	// The server sends at most maxBytes: that, not the client's default
	// pending limits (64 MiB), bounds what waits here to be read.
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		return nil, nil, fmt.Errorf("bus: pull: %w", err)
	}
	req, err := json.Marshal(pullRequest{Batch: n, MaxBytes: maxBytes, NoWait: true})
	if err != nil {
		return nil, nil, fmt.Errorf("bus: pull: %w", err)
	}
	if err := nc.PublishRequest(c.nextSubject, inbox, req); err != nil {
		return nil, nil, fmt.Errorf("bus: pull: %w", err)
	}
	var (
		msgs []jetstream.Msg
		size int
	)
	for len(msgs) < n && size < maxBytes {
		m, err := sub.NextMsg(pullAnswerWait)
		if errors.Is(err, nats.ErrTimeout) {
			// The server holds a no-wait request unanswered while the
			// consumer is at MaxAckPending with messages pending: nothing
			// to take now, as FetchNoWait ends (the next step waits).
			return msgs, nil, nil
		}
		if err != nil {
			return msgs, nil, fmt.Errorf("bus: pull: %w", err)
		}
		if status, descr, ok := pullStatus(m); ok {
			switch {
			case status == "100": // a heartbeat or flow control: not asked for, nothing to do
				continue
			case status == "404", status == "408": // no more messages now, or other requests wait for them
				return msgs, nil, nil
			case status == "409" && strings.Contains(strings.ToLower(descr), "exceeds maxbytes"):
				return msgs, nil, nil
			}
			if l, ok := parseRequestLimit(status, descr); ok {
				return msgs, &l, fmt.Errorf("bus: pull: %s %s", status, descr)
			}
			return msgs, nil, fmt.Errorf("bus: pull: %s %s", status, descr)
		}
		msgs = append(msgs, pulledMsg{m})
		size += m.Size()
	}
	return msgs, nil, nil
}

// requestLimit is a consumer's limit on one pull request that refused
// one: MaxRequestBatch (bytes false) or MaxRequestMaxBytes.
type requestLimit struct {
	bytes bool
	value int
}

// parseRequestLimit reads a 409 "Exceeded MaxRequestBatch of N" or
// "Exceeded MaxRequestMaxBytes of N" (nats-server consumer.go).
func parseRequestLimit(status, descr string) (requestLimit, bool) {
	if status != "409" {
		return requestLimit{}, false
	}
	for _, l := range []struct {
		prefix string
		bytes  bool
	}{{"Exceeded MaxRequestBatch of ", false}, {"Exceeded MaxRequestMaxBytes of ", true}} {
		if v, ok := strings.CutPrefix(descr, l.prefix); ok {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			return requestLimit{bytes: l.bytes, value: n}, err == nil && n > 0
		}
	}
	return requestLimit{}, false
}

// requestCaps are the consumer's limits on a pull request learned from
// refusals, 0 where none was: its requests keep within them until the
// process restarts.
type requestCaps struct {
	batch, bytes atomic.Int64
}

// within is n and maxBytes lowered to the caps learned.
func (rc *requestCaps) within(n, maxBytes int) (int, int) {
	if b := int(rc.batch.Load()); b > 0 {
		n = min(n, b)
	}
	if b := int(rc.bytes.Load()); b > 0 {
		maxBytes = min(maxBytes, b)
	}
	return n, maxBytes
}

// lower records l and reports whether it lowered a cap (a request within
// it is worth making); an operator's limit is worth a line in the log, as
// it makes batches smaller than configured.
func (rc *requestCaps) lower(l requestLimit, log *slog.Logger) bool {
	limit, setting := &rc.batch, "MaxRequestBatch"
	if l.bytes {
		limit, setting = &rc.bytes, "MaxRequestMaxBytes"
	}
	for {
		cur := limit.Load()
		if cur > 0 && cur <= int64(l.value) {
			return false
		}
		if limit.CompareAndSwap(cur, int64(l.value)) {
			log.Warn("the NATS consumer limits each pull request below the batch this service fetches: its fetches keep within the limit, in smaller batches",
				"setting", setting, "limit", l.value)
			return true
		}
	}
}

// wireSize is m's size as the server counts it against a pull request's
// max_bytes: subject, reply subject, encoded headers and data, as nats.go
// sizes a message (the jetstream.Msg hides the one received).
func wireSize(m jetstream.Msg) int {
	return (&nats.Msg{Subject: m.Subject(), Reply: m.Reply(), Header: m.Headers(), Data: m.Data()}).Size()
}

// pullStatus reports whether m is a status message of the server's (a
// header-only message with a Status header, as nats.go tells them apart),
// and which.
func pullStatus(m *nats.Msg) (status, descr string, ok bool) {
	if len(m.Data) > 0 || len(m.Header) == 0 {
		return "", "", false
	}
	status = m.Header.Get("Status")
	return status, m.Header.Get("Description"), status != ""
}

// pulledMsg is a message pullNoWait received, as the jetstream.Msg the
// runner handles (the jetstream package has no way to wrap one). Its acks
// are nats.go's for a JetStream message received on a subscription.
type pulledMsg struct{ m *nats.Msg }

var _ jetstream.Msg = pulledMsg{}

func (p pulledMsg) Metadata() (*jetstream.MsgMetadata, error) {
	md, err := p.m.Metadata()
	if err != nil {
		return nil, err
	}
	return &jetstream.MsgMetadata{
		Sequence:     jetstream.SequencePair{Consumer: md.Sequence.Consumer, Stream: md.Sequence.Stream},
		NumDelivered: md.NumDelivered,
		NumPending:   md.NumPending,
		Timestamp:    md.Timestamp,
		Stream:       md.Stream,
		Consumer:     md.Consumer,
		Domain:       md.Domain,
	}, nil
}

func (p pulledMsg) Data() []byte         { return p.m.Data }
func (p pulledMsg) Headers() nats.Header { return p.m.Header }
func (p pulledMsg) Subject() string      { return p.m.Subject }
func (p pulledMsg) Reply() string        { return p.m.Reply }
func (p pulledMsg) Ack() error           { return p.m.Ack() }

func (p pulledMsg) Nak() error                             { return p.m.Nak() }
func (p pulledMsg) NakWithDelay(delay time.Duration) error { return p.m.NakWithDelay(delay) }
func (p pulledMsg) InProgress() error                      { return p.m.InProgress() }
func (p pulledMsg) Term() error                            { return p.m.Term() }

// DoubleAck waits for the server's confirmation of the ack, when ctx has
// no deadline at most 5 s (jetstream's default API timeout, which its own
// applies), not for ever.
func (p pulledMsg) DoubleAck(ctx context.Context) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
	}
	return p.m.AckSync(nats.Context(ctx))
}

// TermWithReason sends what jetstream's does ("+TERM <reason>"); the
// nats.Msg acks have no reason.
func (p pulledMsg) TermWithReason(reason string) error {
	if reason == "" {
		return p.m.Term()
	}
	return p.m.Respond([]byte("+TERM " + reason))
}
