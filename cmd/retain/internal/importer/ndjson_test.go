package importer

import (
	"errors"
	"strings"
	"testing"
	"time"
)

var testNow = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

func readNDJSON(t *testing.T, input string) ([]Row, error) {
	t.Helper()
	r := NewNDJSONReader(strings.NewReader(input), testNow)
	var rows []Row
	for r.Next() {
		rows = append(rows, r.Row())
	}
	return rows, r.Err()
}

func TestNDJSONReader(t *testing.T) {
	input := strings.Join([]string{
		`{"id":"given","occurred_at":"2025-05-01T10:00:00Z","order_placed":{"customer_id":"c1","order_id":"o1","total":{"amount_minor":1250,"currency":"gbp"}}}`,
		``,
		`   `,
		`{"occurredAt":"2025-05-01T10:00:00Z","orderPlaced":{"customerId":"c1","orderId":"o2","total":{"amountMinor":"99","currency":"GBP"}}}`,
		`{"occurred_at":"2025-05-01T10:00:00Z","order_placed":{"total":{"amount_minor":12.5}}}`,
		`not json`,
		`{"occurred_at":"2025-05-01T10:00:00Z","survey_answered":{"customer_id":"c1","kind":"SURVEY_KIND_NPS","score":11}}`,
		`{"occurred_at":"2025-05-01T10:00:00Z","customer_updated":{"customer_id":"c9"}}` + "\r",
	}, "\n")
	rows, err := readNDJSON(t, input)
	if err != nil {
		t.Fatalf("Err: %v", err)
	}
	wantLines := []int{1, 4, 5, 6, 7, 8}
	if len(rows) != len(wantLines) {
		t.Fatalf("got %d rows, want %d", len(rows), len(wantLines))
	}
	for i, row := range rows {
		if row.Line != wantLines[i] {
			t.Errorf("row %d: line %d, want %d", i, row.Line, wantLines[i])
		}
		if (row.Event == nil) == (row.Err == nil) {
			t.Errorf("row %d: want exactly one of event and error", i)
		}
	}

	t.Run("valid event keeps its id and is normalised", func(t *testing.T) {
		ev := rows[0].Event
		if ev.GetId() != "given" || ev.GetType() != "order.placed" || ev.GetOrderPlaced().GetTotal().GetCurrency() != "GBP" {
			t.Errorf("got %v", ev)
		}
		if ev.GetReceivedAt() != nil || ev.GetTenantId() != "" {
			t.Errorf("received_at/tenant must be left to ingest: %v", ev)
		}
	})
	t.Run("missing id is derived from the natural key", func(t *testing.T) {
		if got, want := rows[1].Event.GetId(), DeriveID("order.placed", "key:o2"); got != want {
			t.Errorf("id = %q, want %q", got, want)
		}
	})
	t.Run("decode error names line and field", func(t *testing.T) {
		var re *RowError
		if !errors.As(rows[2].Err, &re) || re.Line != 5 || re.Field != "order_placed.total.amount_minor" {
			t.Fatalf("err = %v", rows[2].Err)
		}
		if !strings.Contains(re.Error(), "line 5: order_placed.total.amount_minor: must be an integer number of minor units") {
			t.Errorf("Error() = %q", re.Error())
		}
	})
	t.Run("invalid JSON is a row error", func(t *testing.T) {
		if rows[3].Err == nil || !strings.Contains(rows[3].Err.Error(), "line 6: invalid JSON") {
			t.Errorf("err = %v", rows[3].Err)
		}
	})
	t.Run("validation error names line and field", func(t *testing.T) {
		var re *RowError
		if !errors.As(rows[4].Err, &re) || re.Line != 7 || re.Field != "survey_answered.score" {
			t.Fatalf("err = %v", rows[4].Err)
		}
	})
	t.Run("CRLF line and content-derived id", func(t *testing.T) {
		ev := rows[5].Event
		if ev == nil || !strings.HasPrefix(ev.GetId(), "imp-") {
			t.Fatalf("row = %+v", rows[5])
		}
		again, _ := readNDJSON(t, `{"occurred_at":"2025-05-01T10:00:00Z","customer_updated":{"customer_id":"c9"}}`)
		if again[0].Event.GetId() != ev.GetId() {
			t.Errorf("id depends on the line ending: %q vs %q", again[0].Event.GetId(), ev.GetId())
		}
	})
}

// An overlong line is a bad row, like any other: the import goes on with
// the lines after it (it used to stop the whole import there).
func TestNDJSONReaderRejectsOverlongLineAndGoesOn(t *testing.T) {
	input := `{"id":"a"}` + "\n" + `{"source":"` + strings.Repeat("x", MaxNDJSONLine) + `"}` + "\n" + `{"id":"c"}`
	rows, err := readNDJSON(t, input)
	if err != nil {
		t.Fatalf("err = %v, want the reading to go on", err)
	}
	if len(rows) != 3 || rows[1].Line != 2 || rows[1].Err == nil || !strings.Contains(rows[1].Err.Error(), "line 2: longer than") || rows[2].Line != 3 {
		t.Fatalf("rows %+v, want line 2 rejected as too long and line 3 read", rows)
	}
}

func TestNDJSONReaderAcceptsLongLinesUnderTheLimit(t *testing.T) {
	line := `{"occurred_at":"2025-05-01T10:00:00Z","ticket_opened":{"customer_id":"c","ticket_id":"t","subject":"` + strings.Repeat("x", 4000) + `"},"source":"` + strings.Repeat("s", 200) + `"}`
	big := strings.Repeat(line+"\n", 3)
	rows, err := readNDJSON(t, big)
	if err != nil || len(rows) != 3 || rows[2].Err != nil {
		t.Fatalf("rows=%d err=%v", len(rows), err)
	}
}
