package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/retainhq/retain/cmd/retain/internal/importer"
	"github.com/retainhq/retain/platform/auth"
	eventsv1 "github.com/retainhq/retain/proto/gen/go/retain/events/v1"
	ingestv1 "github.com/retainhq/retain/proto/gen/go/retain/ingest/v1"
	"github.com/retainhq/retain/services/ingest/event"
)

// maxRequestBytes is the most a PublishBatch request of the sender weighs,
// encoded: the server's limit less 64 KiB, room for whatever the request
// may carry besides its events and for a proxy on the way that counts the
// gRPC frame around the message against the same limit.
const maxRequestBytes = serverMaxMessageBytes - 64<<10

// errRefusedTooLarge marks a request refused for its size: by the client's
// gRPC library before sending it, or by the server before reading it. None
// of its events was stored, and sending it again is refused again.
var errRefusedTooLarge = errors.New("request refused as too large")

// sourceEvent is one event read from an input, with where it came from so
// that a rejection can point at the line.
type sourceEvent struct {
	line  int
	event *eventsv1.Event
	err   error // the line could not be turned into an event
}

// rejection is one event that did not get in, and why: one text per
// problem, without the line number.
type rejection struct {
	line    int
	reasons []string
}

// sendSummary is what an import or publish run did. Every event read is
// accepted, a duplicate, rejected, unanswered or unsent; the last two are
// only for a run that stopped on an error.
type sendSummary struct {
	read, accepted, duplicates int64
	rejected                   []rejection
	// unanswered: sent in a request that got no answer, so stored or not
	// (a server stopping may have stored a request it could not answer).
	unanswered int64
	// refused: sent in a request refused whole for its size, so not
	// stored.
	refused int64
	// unsent: read, but not sent before the run stopped.
	unsent  int64
	elapsed time.Duration
}

// stopped reports whether the run ended before every event read was
// answered.
func (s *sendSummary) stopped() bool { return s.unanswered > 0 || s.refused > 0 || s.unsent > 0 }

// sender publishes a stream of events in batches through IngestService with
// several requests in flight, retrying the whole batch (same ids, so dedupe
// keeps it harmless) while the server says to come back later.
type sender struct {
	client ingestv1.IngestServiceClient
	// batch and maxBytes bound a request: at most batch events and, with
	// large events, at most maxBytes encoded. An event that does not fit
	// in maxBytes alone is rejected without being sent.
	batch, maxBytes int
	workers         int
	progress        io.Writer // nil: no progress line
}

func newSender(conn grpc.ClientConnInterface, progress io.Writer) *sender {
	return &sender{client: ingestv1.NewIngestServiceClient(conn), batch: event.MaxBatchEvents, maxBytes: maxRequestBytes, workers: 8, progress: progress}
}

type outBatch struct {
	lines  []int
	events []*eventsv1.Event
	bytes  int // the encoded size of a PublishBatchRequest of events
}

// requestBytes is what ev adds to the encoded size of a PublishBatchRequest:
// the event and, as an element of the repeated field events (number 1), its
// tag and length.
func requestBytes(ev *eventsv1.Event) int {
	return protowire.SizeTag(1) + protowire.SizeBytes(proto.Size(ev))
}

// send reads every event from next until it returns io.EOF.
func (s *sender) send(ctx context.Context, next func() (sourceEvent, error)) (*sendSummary, error) {
	start := time.Now()
	sum := &sendSummary{}
	var mu sync.Mutex
	var accepted, duplicates, read, unanswered, refused, unsent atomic.Int64
	batches := make(chan outBatch, s.workers)
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	var wg sync.WaitGroup
	for range s.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range batches {
				if ctx.Err() != nil {
					unsent.Add(int64(len(b.events)))
					continue
				}
				resp, err := s.publish(ctx, b)
				if err != nil {
					if errors.Is(err, errRefusedTooLarge) {
						refused.Add(int64(len(b.events)))
					} else {
						unanswered.Add(int64(len(b.events)))
					}
					cancel(err)
					continue
				}
				var rej []rejection
				for i, r := range resp.GetResults() {
					if r.GetStatus() == ingestv1.EventStatus_EVENT_STATUS_REJECTED {
						rej = append(rej, rejection{line: b.lines[i], reasons: fieldErrorTexts(r.GetErrors())})
					}
				}
				accepted.Add(int64(resp.GetAccepted()))
				duplicates.Add(int64(resp.GetDuplicates()))
				if len(rej) > 0 {
					mu.Lock()
					sum.rejected = append(sum.rejected, rej...)
					mu.Unlock()
				}
			}
		}()
	}

	stopProgress := s.startProgress(start, &read, &accepted, &duplicates)
	var readErr error
	cur := outBatch{}
	flush := func() {
		select {
		case batches <- cur:
		case <-ctx.Done():
			unsent.Add(int64(len(cur.events)))
		}
		cur = outBatch{}
	}
	for ctx.Err() == nil {
		se, err := next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			readErr = err
			break
		}
		read.Add(1)
		if se.err != nil {
			mu.Lock()
			sum.rejected = append(sum.rejected, rejection{line: se.line, reasons: importer.Problems(se.err)})
			mu.Unlock()
			continue
		}
		size := requestBytes(se.event)
		if size > s.maxBytes {
			// Alone in a request it would still be refused, and would
			// stop the import with the events of its batch: it is this
			// event's problem, reported as such.
			mu.Lock()
			sum.rejected = append(sum.rejected, rejection{line: se.line, reasons: []string{
				fmt.Sprintf("event %q: too large, %d bytes encoded where a request may carry at most %d; not sent", se.event.GetId(), size, s.maxBytes)}})
			mu.Unlock()
			continue
		}
		if len(cur.events) > 0 && cur.bytes+size > s.maxBytes {
			flush()
		}
		cur.lines = append(cur.lines, se.line)
		cur.events = append(cur.events, se.event)
		cur.bytes += size
		if len(cur.events) == s.batch {
			flush()
		}
	}
	if len(cur.events) > 0 {
		if ctx.Err() == nil {
			batches <- cur
		} else {
			unsent.Add(int64(len(cur.events)))
		}
	}
	close(batches)
	wg.Wait()
	stopProgress()

	sum.read, sum.accepted, sum.duplicates = read.Load(), accepted.Load(), duplicates.Load()
	sum.unanswered, sum.refused, sum.unsent = unanswered.Load(), refused.Load(), unsent.Load()
	sum.elapsed = time.Since(start)
	sort.Slice(sum.rejected, func(i, j int) bool { return sum.rejected[i].line < sum.rejected[j].line })
	if readErr != nil {
		return sum, readErr
	}
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return sum, err
	}
	return sum, ctx.Err()
}

// publish sends one batch, waiting and retrying while Retain is overloaded or
// unavailable.
func (s *sender) publish(ctx context.Context, b outBatch) (*ingestv1.PublishBatchResponse, error) {
	backoff := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		resp, err := s.client.PublishBatch(ctx, &ingestv1.PublishBatchRequest{Events: b.events})
		if err == nil {
			return resp, nil
		}
		if tooLarge(err) {
			// The sender keeps requests under the server's limit, so
			// this is a bug of the sender or a server (or a proxy in
			// front of it) that takes less: either way a retry is
			// refused again.
			return nil, fmt.Errorf("publish batch of %d events, %d bytes: %w, none of it stored; requests are kept under %d bytes, so the server or a proxy in front of it takes less, or this is a bug of retain (%w)",
				len(b.events), b.bytes, errRefusedTooLarge, s.maxBytes, err)
		}
		code := status.Code(err)
		if (code != codes.Unavailable && code != codes.ResourceExhausted) || attempt >= 10 {
			return nil, fmt.Errorf("publish batch: %w", callError(err, "ingest", auth.ScopeEventsWrite))
		}
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// tooLarge reports whether err is gRPC refusing a message over its size
// limit, on the client before sending it ("trying to send message larger
// than max") or on the server before reading it ("received message larger
// than max"). Both are RESOURCE_EXHAUSTED, the code ingest also answers when
// it is overloaded, which is worth retrying; only the text tells them apart.
func tooLarge(err error) bool {
	st, ok := status.FromError(err)
	return ok && st.Code() == codes.ResourceExhausted && strings.Contains(st.Message(), "larger than max")
}

func (s *sender) startProgress(start time.Time, read, accepted, dups *atomic.Int64) func() {
	if s.progress == nil {
		return func() {}
	}
	// On a terminal one line is redrawn five times a second; into a file
	// or a pipe (a CI log, the demo's output captured) a carriage return
	// would pile every redraw onto one line, so a line is written every
	// ten seconds instead.
	every, redraw := 10*time.Second, isTerminal(s.progress)
	if redraw {
		every = 200 * time.Millisecond
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	print := func(last bool) {
		el := time.Since(start).Seconds()
		rate := 0.0
		if el > 0 {
			rate = float64(accepted.Load()+dups.Load()) / el
		}
		line := fmt.Sprintf("  read %d  sent %d  (%.0f events/s)", read.Load(), accepted.Load()+dups.Load(), rate)
		switch {
		case redraw && last:
			fmt.Fprintf(s.progress, "\r%s   \n", line)
		case redraw:
			fmt.Fprintf(s.progress, "\r%s   ", line)
		default:
			fmt.Fprintln(s.progress, line)
		}
	}
	go func() {
		defer wg.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				print(false)
			case <-done:
				print(true)
				return
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

func describeErrors(errs []*ingestv1.FieldError) string {
	return strings.Join(fieldErrorTexts(errs), "; ")
}

// fieldErrorTexts is one "field: description" per problem ingest found.
func fieldErrorTexts(errs []*ingestv1.FieldError) []string {
	parts := make([]string, 0, len(errs))
	for _, e := range errs {
		parts = append(parts, e.GetField()+": "+e.GetDescription())
	}
	return parts
}

// printSummary writes the final report of a run, listing at most maxRejected
// rejections.
func printSummary(w io.Writer, sum *sendSummary, maxRejected int) {
	rate := 0.0
	if s := sum.elapsed.Seconds(); s > 0 {
		rate = float64(sum.accepted+sum.duplicates) / s
	}
	if sum.stopped() {
		// Each event read, by what is known of it: a request without an
		// answer may or may not have been stored.
		refused := ""
		if sum.refused > 0 {
			refused = fmt.Sprintf("; %d sent in requests refused as too large (not stored)", sum.refused)
		}
		fmt.Fprintf(w, "stopped after %s, of %d events read: %d accepted, %d duplicates, %d rejected; %d sent in requests that got no answer (stored or not: unknown)%s; %d not sent\n",
			sum.elapsed.Round(time.Millisecond), sum.read, sum.accepted, sum.duplicates, len(sum.rejected), sum.unanswered, refused, sum.unsent)
	} else {
		fmt.Fprintf(w, "read %d events in %s (%.0f events/s): %d accepted, %d duplicates, %d rejected\n",
			sum.read, sum.elapsed.Round(time.Millisecond), rate, sum.accepted, sum.duplicates, len(sum.rejected))
	}
	for i, r := range sum.rejected {
		if i == maxRejected {
			fmt.Fprintf(w, "  ... and %d more rejected\n", len(sum.rejected)-maxRejected)
			break
		}
		// The line once, then each problem of the record, the later ones
		// indented under the first.
		head := fmt.Sprintf("  line %d: ", r.line)
		if len(r.reasons) == 0 {
			fmt.Fprintf(w, "%srejected\n", head)
		}
		for j, reason := range r.reasons {
			if j > 0 {
				head = strings.Repeat(" ", len(head))
			}
			fmt.Fprintf(w, "%s%s\n", head, reason)
		}
	}
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
