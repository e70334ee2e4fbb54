package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
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
// Like FetchNoWait it is not canceled by a context: a message the server
// sent to an inbox no longer read is only redelivered after AckWait.
func (c *Consumer) pullNoWait(n, maxBytes int) ([]jetstream.Msg, error) {
	nc := c.bus.NC
	inbox := nc.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return nil, fmt.Errorf("bus: pull: %w", err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	// The server sends at most maxBytes: that, not the client's default
	// pending limits (64 MiB), bounds what waits here to be read.
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		return nil, fmt.Errorf("bus: pull: %w", err)
	}
	req, err := json.Marshal(pullRequest{Batch: n, MaxBytes: maxBytes, NoWait: true})
	if err != nil {
		return nil, fmt.Errorf("bus: pull: %w", err)
	}
	if err := nc.PublishRequest(c.nextSubject, inbox, req); err != nil {
		return nil, fmt.Errorf("bus: pull: %w", err)
	}
	var (
		msgs []jetstream.Msg
		size int
	)
	for len(msgs) < n && size < maxBytes {
		m, err := sub.NextMsg(pullAnswerWait)
		if err != nil {
			if errors.Is(err, nats.ErrTimeout) {
				err = fmt.Errorf("no answer within %s, %d messages in", pullAnswerWait, len(msgs))
			}
			return msgs, fmt.Errorf("bus: pull: %w", err)
		}
		if status, descr, ok := pullStatus(m); ok {
			switch {
			case status == "100": // a heartbeat or flow control: not asked for, nothing to do
				continue
			case status == "404", status == "408": // no more messages now, or other requests wait for them
				return msgs, nil
			case status == "409" && strings.Contains(strings.ToLower(descr), "exceeds maxbytes"):
				return msgs, nil
			default:
				return msgs, fmt.Errorf("bus: pull: %s %s", status, descr)
			}
		}
		msgs = append(msgs, pulledMsg{m})
		size += m.Size()
	}
	return msgs, nil
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

func (p pulledMsg) Data() []byte                           { return p.m.Data }
func (p pulledMsg) Headers() nats.Header                   { return p.m.Header }
func (p pulledMsg) Subject() string                        { return p.m.Subject }
func (p pulledMsg) Reply() string                          { return p.m.Reply }
func (p pulledMsg) Ack() error                             { return p.m.Ack() }
func (p pulledMsg) DoubleAck(ctx context.Context) error    { return p.m.AckSync(nats.Context(ctx)) }
func (p pulledMsg) Nak() error                             { return p.m.Nak() }
func (p pulledMsg) NakWithDelay(delay time.Duration) error { return p.m.NakWithDelay(delay) }
func (p pulledMsg) InProgress() error                      { return p.m.InProgress() }
func (p pulledMsg) Term() error                            { return p.m.Term() }

// TermWithReason sends what jetstream's does ("+TERM <reason>"); the
// nats.Msg acks have no reason.
func (p pulledMsg) TermWithReason(reason string) error {
	if reason == "" {
		return p.m.Term()
	}
	return p.m.Respond([]byte("+TERM " + reason))
}
