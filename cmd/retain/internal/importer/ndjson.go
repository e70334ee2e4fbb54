package importer

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"time"

	eventsv1 "github.com/retainhq/retain/proto/gen/go/retain/events/v1"
	"github.com/retainhq/retain/services/ingest/event"
)

// MaxNDJSONLine is the longest NDJSON line accepted: far above any real
// event (a full order with line items is a few KiB), low enough to bound
// memory.
const MaxNDJSONLine = 1 << 20

// NDJSONReader streams events from newline-delimited JSON, one protojson Event
// per line, exactly the form the HTTP API takes. Blank lines are skipped.
// Events without an id get one derived from their content (see EventID).
//
// Use it like bufio.Scanner:
//
//	for r.Next() { row := r.Row(); ... }
//	if err := r.Err(); err != nil { ... }
type NDJSONReader struct {
	br   *bufio.Reader
	now  time.Time
	line int
	row  Row
	err  error
}

// NewNDJSONReader reads NDJSON events from r. now is the clock Validate
// compares occurred_at against (pass time.Now() outside tests).
func NewNDJSONReader(r io.Reader, now time.Time) *NDJSONReader {
	return &NDJSONReader{br: bufio.NewReaderSize(r, 64<<10), now: now}
}

// Next advances to the next non-blank line. It returns false at the end of
// the input or on a read error (see Err). A line longer than MaxNDJSONLine
// is a row with an error, as any bad line is: it was read past, not kept,
// and the lines after it are read as usual.
func (r *NDJSONReader) Next() bool {
	for {
		line, tooLong, err := r.readLine()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				r.err = fmt.Errorf("read line %d: %w", r.line+1, err)
			}
			return false
		}
		r.line++
		if tooLong {
			r.row = Row{Line: r.line, Err: &RowError{Line: r.line, Msg: fmt.Sprintf("longer than %d bytes: not read", MaxNDJSONLine)}}
			return true
		}
		if line = bytes.TrimSpace(line); len(line) > 0 {
			r.row = r.decode(line)
			return true
		}
	}
}

// readLine reads the next line without its line ending, keeping at most
// MaxNDJSONLine bytes of it (tooLong: it was longer, and none is kept). At
// the end of the input it returns io.EOF.
func (r *NDJSONReader) readLine() (line []byte, tooLong bool, err error) {
	started := false
	for {
		chunk, more, err := r.br.ReadLine()
		if err != nil {
			if errors.Is(err, io.EOF) && started {
				return line, tooLong, nil
			}
			return nil, false, err
		}
		started = true
		if !tooLong {
			if len(line)+len(chunk) > MaxNDJSONLine {
				line, tooLong = nil, true
			} else {
				line = append(line, chunk...)
			}
		}
		if !more {
			return line, tooLong, nil
		}
	}
}

// Row returns the record Next advanced to.
func (r *NDJSONReader) Row() Row { return r.row }

// Err returns the error that stopped reading (I/O), or nil at a clean end
// of input. Problems with single lines, one too long included, are in
// Row().Err instead and do not stop reading.
func (r *NDJSONReader) Err() error { return r.err }

func (r *NDJSONReader) decode(line []byte) Row {
	ev, fe := event.UnmarshalEvent(line)
	if fe != nil {
		return Row{Line: r.line, Err: &RowError{Line: r.line, Field: fe.GetField(), Msg: fe.GetDescription()}}
	}
	if ev.GetId() == "" {
		ev.Id = EventID(ev, line)
	}
	return finish(r.line, ev, r.now, nil)
}

// EventID derives the id of an imported event that has none: from its
// natural key when its type has one (order id of an order, refund id of a
// refund, ticket id of a ticket), otherwise from content, the record's bytes
// in a canonical form. Using the natural key makes the same order imported
// from NDJSON and from CSV the same event.
func EventID(ev *eventsv1.Event, content []byte) string {
	typ := event.TypeOf(ev)
	if key := naturalKey(ev); key != "" {
		return DeriveID(typ, "key:"+key)
	}
	return DeriveID(typ, "content:"+string(content))
}

func naturalKey(ev *eventsv1.Event) string {
	switch pl := ev.GetPayload().(type) {
	case *eventsv1.Event_OrderPlaced:
		return trimmed(pl.OrderPlaced.GetOrderId())
	case *eventsv1.Event_OrderRefunded:
		return trimmed(pl.OrderRefunded.GetRefundId())
	case *eventsv1.Event_TicketOpened:
		return trimmed(pl.TicketOpened.GetTicketId())
	case *eventsv1.Event_TicketResolved:
		return trimmed(pl.TicketResolved.GetTicketId())
	}
	return ""
}

func trimmed(s string) string { return string(bytes.TrimSpace([]byte(s))) }

// finish normalises ev the way ingest will, validates it, and turns
// validation problems into row errors. describe maps an event field path
// to the import field (and column) it came from and may reword the
// problem in the file's terms; nil keeps the path and the words.
func finish(line int, ev *eventsv1.Event, now time.Time, describe func(path, problem string) (field, column, msg string)) Row {
	event.Normalize(ev, "", now, nil)
	// ingest sets received_at when it accepts the event; an imported event
	// has not been received yet.
	ev.ReceivedAt = nil
	problems := event.Validate(ev, now)
	if len(problems) == 0 {
		return Row{Line: line, Event: ev}
	}
	errs := make([]error, 0, len(problems))
	for _, p := range problems {
		re := &RowError{Line: line, Field: p.GetField(), Msg: p.GetDescription()}
		if describe != nil {
			if f, col, msg := describe(p.GetField(), p.GetDescription()); f != "" {
				re.Field, re.Column, re.Msg = f, col, msg
			}
		}
		errs = append(errs, re)
	}
	if len(errs) == 1 {
		return Row{Line: line, Err: errs[0]}
	}
	return Row{Line: line, Err: errors.Join(errs...)}
}
