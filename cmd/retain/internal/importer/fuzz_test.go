package importer

import (
	"bytes"
	"errors"
	"testing"

	"github.com/retainhq/retain/services/ingest/event"
)

func FuzzCSVOrders(f *testing.F) {
	f.Add([]byte("InvoiceNo,customer,at,total\n536365,17850,2010-12-01 08:26:00,139.12\n"))
	f.Add([]byte("InvoiceNo,customer,at,total\r\n1,c,2010-12-01 08:26:00,1.5\r\n1,c,2010-12-01 08:26:00,2\r\n"))
	f.Add([]byte("\ufefftotal,at,customer,InvoiceNo\n-1.00,2010-12-01 08:26:00,c,\"x,y\"\n"))
	f.Add([]byte("InvoiceNo,customer,at,total\n1,c,bad,1.234\n2,\"c\n3,c,2010-12-01 08:26:00\n"))
	f.Add([]byte("InvoiceNo,customer,at,total\n\"\"\"\",\xff,2030-01-01 00:00:00,92233720368547758.08\n"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, data []byte) {
		opts := ordersOptions(t)
		opts.Now = testNow
		r, err := NewCSVReader(bytes.NewReader(data), opts)
		if err != nil {
			return // header problems are reported before any row
		}
		lastLine := 0
		for r.Next() {
			row := r.Row()
			checkRow(t, row, lastLine)
			lastLine = row.Line
		}
		if err := r.Err(); err != nil {
			t.Fatalf("a bytes.Reader cannot fail to read: %v", err)
		}
	})
}

func FuzzNDJSON(f *testing.F) {
	f.Add([]byte(`{"occurred_at":"2025-05-01T10:00:00Z","order_placed":{"customer_id":"c1","order_id":"o1","total":{"amount_minor":1250,"currency":"gbp"}}}` + "\n"))
	f.Add([]byte(`{"occurredAt":"2025-05-01T10:00:00Z","customerUpdated":{"customerId":"c9","traits":{"a":"b"}}}` + "\r\n\n" + `{"id":1}`))
	f.Add([]byte(`{"order_placed":{"total":{"amount_minor":12.5}}}` + "\nnull\n[]\n{"))
	f.Add([]byte(`{"survey_answered":{"kind":"SURVEY_KIND_NPS","score":11,"customer_id":"c"},"occurred_at":"2025-05-01T10:00:00Z"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := NewNDJSONReader(bytes.NewReader(data), testNow)
		lastLine := 0
		for r.Next() {
			row := r.Row()
			checkRow(t, row, lastLine)
			lastLine = row.Line
		}
		if err := r.Err(); err != nil {
			t.Fatalf("unexpected stop: %v", err)
		}
	})
}

// checkRow asserts what every reader promises about a row: an event that
// validates, or errors that carry its line number.
func checkRow(t *testing.T, row Row, lastLine int) {
	t.Helper()
	if row.Line <= lastLine {
		t.Fatalf("line %d after line %d", row.Line, lastLine)
	}
	if (row.Event == nil) == (row.Err == nil) {
		t.Fatalf("line %d: want exactly one of event and error, got %v and %v", row.Line, row.Event, row.Err)
	}
	if row.Event != nil {
		if errs := event.Validate(row.Event, testNow); len(errs) != 0 {
			t.Fatalf("line %d: yielded event does not validate: %v", row.Line, errs)
		}
		if row.Event.GetId() == "" {
			t.Fatalf("line %d: no id", row.Line)
		}
		return
	}
	var re *RowError
	if !errors.As(row.Err, &re) {
		t.Fatalf("line %d: error %T is not a *RowError: %v", row.Line, row.Err, row.Err)
	}
	if re.Line != row.Line || re.Msg == "" {
		t.Fatalf("row line %d, error %+v", row.Line, re)
	}
}
