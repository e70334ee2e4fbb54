package importer

import (
	"errors"
	"strings"
	"testing"
	"time"

	eventsv1 "github.com/retainhq/retain/proto/gen/go/retain/events/v1"
)

func readCSV(t *testing.T, input string, opts CSVOptions) []Row {
	t.Helper()
	if opts.Now.IsZero() {
		opts.Now = testNow
	}
	r, err := NewCSVReader(strings.NewReader(input), opts)
	if err != nil {
		t.Fatalf("NewCSVReader: %v", err)
	}
	var rows []Row
	for r.Next() {
		rows = append(rows, r.Row())
	}
	if err := r.Err(); err != nil {
		t.Fatalf("Err: %v", err)
	}
	return rows
}

func mustMapping(t *testing.T, spec string) map[string]string {
	t.Helper()
	m, err := ParseMapping(spec)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func ordersOptions(t *testing.T) CSVOptions {
	return CSVOptions{
		Kind:       KindOrders,
		Mapping:    mustMapping(t, "order_id=InvoiceNo,customer_id=customer,placed_at=at,total=total"),
		Currency:   "GBP",
		TimeFormat: "2006-01-02 15:04:05",
	}
}

func onlyEvent(t *testing.T, rows []Row) *eventsv1.Event {
	t.Helper()
	if len(rows) != 1 {
		t.Fatalf("got %d rows, want 1", len(rows))
	}
	if rows[0].Err != nil {
		t.Fatalf("row error: %v", rows[0].Err)
	}
	return rows[0].Event
}

func TestParseMapping(t *testing.T) {
	tests := []struct {
		name    string
		specs   []string
		want    map[string]string
		errPart string
	}{
		{"pairs", []string{"order_id=InvoiceNo, customer_id = customer"}, map[string]string{"order_id": "InvoiceNo", "customer_id": "customer"}, ""},
		{"repeated flags merge", []string{"a=A", "b=B"}, map[string]string{"a": "A", "b": "B"}, ""},
		{"column with spaces and equals", []string{"total=Total (GBP)"}, map[string]string{"total": "Total (GBP)"}, ""},
		{"empty parts ignored", []string{"a=A,,", ""}, map[string]string{"a": "A"}, ""},
		{"missing equals", []string{"order_id"}, nil, `"order_id" is not FIELD=COLUMN`},
		{"empty column", []string{"order_id="}, nil, "not FIELD=COLUMN"},
		{"empty field", []string{"=InvoiceNo"}, nil, "not FIELD=COLUMN"},
		{"field twice", []string{"a=A", "a=B"}, nil, "a is mapped twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseMapping(tt.specs...)
			if tt.errPart != "" {
				if err == nil || !strings.Contains(err.Error(), tt.errPart) {
					t.Fatalf("err = %v, want %q", err, tt.errPart)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
			for k, v := range tt.want {
				if got[k] != v {
					t.Errorf("%s = %q, want %q", k, got[k], v)
				}
			}
		})
	}
}

func TestParseKind(t *testing.T) {
	for _, k := range Kinds() {
		if got, err := ParseKind(" " + strings.ToUpper(string(k)) + " "); err != nil || got != k {
			t.Errorf("ParseKind(%q) = %q, %v", k, got, err)
		}
	}
	if _, err := ParseKind("invoices"); err == nil || !strings.Contains(err.Error(), "orders, customers, refunds, tickets, surveys") {
		t.Errorf("err = %v", err)
	}
}

func TestNewCSVReaderRejects(t *testing.T) {
	const header = "InvoiceNo,customer,at,total\n"
	tests := []struct {
		name    string
		input   string
		opts    func(*CSVOptions)
		errPart []string
	}{
		{"empty file", "", nil, []string{"empty", "header row"}},
		{"mapped column missing", header, func(o *CSVOptions) { o.Mapping["total"] = "Amount" },
			[]string{`--map total=Amount: no column "Amount"`, `columns: "InvoiceNo", "customer", "at", "total"`}},
		{"unknown field", header, func(o *CSVOptions) { o.Mapping["revenue"] = "total" },
			[]string{`unknown field "revenue"`, "valid fields: order_id, customer_id, placed_at, total, currency, coupon_code"}},
		{"trait on orders", header, func(o *CSVOptions) { o.Mapping["trait.x"] = "total" }, []string{`unknown field "trait.x"`}},
		{"required field unmapped", header, func(o *CSVOptions) { delete(o.Mapping, "customer_id") },
			[]string{"customer_id is required", "--map customer_id=COLUMN", `"customer"`}},
		{"no currency", header, func(o *CSVOptions) { o.Currency = "" }, []string{"--currency"}},
		{"bad currency", header, func(o *CSVOptions) { o.Currency = "POUNDS" }, []string{`"POUNDS" is not an ISO 4217`}},
		{"duplicate mapped column", "InvoiceNo,customer,at,total,total\n", nil, []string{`column "total" appears more than once`}},
		{"unknown kind", header, func(o *CSVOptions) { o.Kind = "invoices" }, []string{`unknown kind "invoices"`}},
		{"survey kind missing", "customer,score,at\n", func(o *CSVOptions) {
			o.Kind, o.Mapping = KindSurveys, map[string]string{"customer_id": "customer", "score": "score", "answered_at": "at"}
		}, []string{"survey kind must be given", "nps", "csat"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := ordersOptions(t)
			if tt.opts != nil {
				tt.opts(&opts)
			}
			_, err := NewCSVReader(strings.NewReader(tt.input), opts)
			if err == nil {
				t.Fatal("no error")
			}
			for _, p := range tt.errPart {
				if !strings.Contains(err.Error(), p) {
					t.Errorf("error %q lacks %q", err, p)
				}
			}
		})
	}
}

func TestCSVOrders(t *testing.T) {
	input := "\ufeffInvoiceNo,customer,at,total,Coupon\n" +
		"536365,17850,2010-12-01 08:26:00,139.12,\n" +
		"536366, 17850 ,2010-12-01 08:28:00,22.2,SPRING\n"
	opts := ordersOptions(t)
	opts.Mapping["coupon_code"] = "Coupon"
	rows := readCSV(t, input, opts)
	if len(rows) != 2 {
		t.Fatalf("got %d rows", len(rows))
	}
	for _, r := range rows {
		if r.Err != nil {
			t.Fatalf("line %d: %v", r.Line, r.Err)
		}
	}
	ev := rows[1].Event
	o := ev.GetOrderPlaced()
	if rows[1].Line != 3 || o.GetOrderId() != "536366" || o.GetCustomerId() != "17850" || o.GetCouponCode() != "SPRING" {
		t.Errorf("line %d: %v", rows[1].Line, ev)
	}
	if o.GetTotal().GetAmountMinor() != 2220 || o.GetTotal().GetCurrency() != "GBP" {
		t.Errorf("total = %v", o.GetTotal())
	}
	if want := time.Date(2010, 12, 1, 8, 28, 0, 0, time.UTC); !ev.GetOccurredAt().AsTime().Equal(want) {
		t.Errorf("occurred_at = %v, want %v", ev.GetOccurredAt().AsTime(), want)
	}
	if ev.GetType() != "order.placed" || ev.GetSource() != "import:orders" {
		t.Errorf("type/source = %q/%q", ev.GetType(), ev.GetSource())
	}
	if ev.GetId() != DeriveID("order.placed", "key:536366") {
		t.Errorf("id = %q", ev.GetId())
	}
}

func TestCSVRowErrors(t *testing.T) {
	const header = "InvoiceNo,customer,at,total\n"
	tests := []struct {
		name    string
		row     string
		field   string
		column  string
		msgPart string
	}{
		{"too many decimals", "1,c,2010-12-01 08:26:00,1.234\n", "total", "total", "has 3 decimal places; GBP allows at most 2"},
		{"not an amount", "1,c,2010-12-01 08:26:00,12,50\n", "", "", "wrong number of fields"},
		{"amount with symbol", "1,c,2010-12-01 08:26:00,£5\n", "total", "total", "not a decimal amount"},
		{"bad time", "1,c,01/12/2010 08:26,1.00\n", "placed_at", "at", `does not match the time format "2006-01-02 15:04:05"`},
		{"empty order id", ",c,2010-12-01 08:26:00,1.00\n", "order_id", "InvoiceNo", "is empty"},
		{"empty customer", "1,,2010-12-01 08:26:00,1.00\n", "customer_id", "customer", "is empty"},
		{"negative total fails validation, as written", "1,c,2010-12-01 08:26:00,-1.00\n", "total", "total", "must not be negative, got -1.00"},
		{"negative whole total as written, not in minor units", "1,c,2010-12-01 08:26:00,-3\n", "total", "total", "must not be negative, got -3"},
		{"total above the sanity limit in major units", "1,c,2010-12-01 08:26:00,1000000000000.01\n", "total", "total", "1000000000000.01 exceeds the sanity limit of 1000000000000.00 GBP"},
		{"future order fails validation", "1,c,2030-01-01 00:00:00,1.00\n", "placed_at", "at", "in the future"},
		{"order id too long", strings.Repeat("9", 300) + ",c,2010-12-01 08:26:00,1.00\n", "order_id", "InvoiceNo", "at most 256"},
		{"bad quoting", "1,c\"x,2010-12-01 08:26:00,1.00\n", "", "", "malformed CSV at column 4"},
		{"an open quote takes the next line", "1,\"c,2010-12-01 08:26:00,1.00\n2,c,2010-12-01 08:26:00,2.00\n", "", "", "lines 2-3 were read as one row and are all skipped"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rows := readCSV(t, header+tt.row, ordersOptions(t))
			if len(rows) != 1 || rows[0].Err == nil {
				t.Fatalf("rows = %+v", rows)
			}
			var re *RowError
			if !errors.As(rows[0].Err, &re) {
				t.Fatalf("err %T %v is not a *RowError", rows[0].Err, rows[0].Err)
			}
			if re.Line != 2 || re.Field != tt.field || re.Column != tt.column {
				t.Errorf("got line %d field %q column %q, want 2 %q %q (%v)", re.Line, re.Field, re.Column, tt.field, tt.column, re)
			}
			if !strings.Contains(re.Msg, tt.msgPart) {
				t.Errorf("message %q lacks %q", re.Msg, tt.msgPart)
			}
			if !strings.HasPrefix(rows[0].Err.Error(), "line 2") {
				t.Errorf("Error() = %q", rows[0].Err.Error())
			}
		})
	}
}

func TestCSVKeepsGoingAfterBadRows(t *testing.T) {
	input := "InvoiceNo,customer,at,total\n" +
		"1,c,2010-12-01 08:26:00,1.00\n" +
		"2,c,2010-12-01 08:26:00\n" +
		"3,c,bad,x\n" +
		"\n" +
		"4,c,2010-12-01 08:26:00,4.00\n"
	rows := readCSV(t, input, ordersOptions(t))
	var lines []int
	var good int
	for _, r := range rows {
		lines = append(lines, r.Line)
		if r.Err == nil {
			good++
		}
	}
	if good != 2 || len(rows) != 4 || lines[3] != 6 {
		t.Fatalf("good=%d lines=%v", good, lines)
	}
	t.Run("several problems in one row are all reported", func(t *testing.T) {
		msg := rows[2].Err.Error()
		if !strings.Contains(msg, "line 4: placed_at") || !strings.Contains(msg, "line 4: total") {
			t.Errorf("err = %q", msg)
		}
		// Problems gives each problem once, without the line number, for
		// a report that prints the line above them.
		got := Problems(rows[2].Err)
		if len(got) != 2 || !strings.HasPrefix(got[1], `placed_at (column "at"): "bad" does not match`) || !strings.HasPrefix(got[0], `total (column "total"): "x" is not a decimal amount`) {
			t.Errorf("Problems = %q", got)
		}
		if got := Problems(rows[1].Err); len(got) != 1 || strings.Contains(got[0], "line") {
			t.Errorf("Problems of a malformed row = %q", got)
		}
	})
}

func TestCSVDuplicateNaturalKeys(t *testing.T) {
	input := "InvoiceNo,customer,at,total\n" +
		"1,c,2010-12-01 08:26:00,1.00\n" +
		"1,c,2010-12-01 08:26:00,1.00\n" +
		"1,c,2010-12-01 08:26:00,2.00\n"
	rows := readCSV(t, input, ordersOptions(t))
	if rows[1].Err != nil || rows[1].Event.GetId() != rows[0].Event.GetId() {
		t.Errorf("an identical repeated row is harmless: %+v", rows[1])
	}
	var re *RowError
	if !errors.As(rows[2].Err, &re) || re.Field != "order_id" || !strings.Contains(re.Msg, "already on line 2 with different values") {
		t.Errorf("conflicting row: %v", rows[2].Err)
	}
}

func TestCSVIDsAreDeterministic(t *testing.T) {
	ordersA := "InvoiceNo,customer,at,total\n1,c,2010-12-01 08:26:00,1.00\n"
	ordersB := "total,at,InvoiceNo,customer,Extra\n1.00,2010-12-01 08:26:00,1,c,x\n"
	a := onlyEvent(t, readCSV(t, ordersA, ordersOptions(t)))
	b := onlyEvent(t, readCSV(t, ordersB, ordersOptions(t)))
	if a.GetId() != b.GetId() {
		t.Errorf("column order changed the id: %s vs %s", a.GetId(), b.GetId())
	}
	if len(a.GetId()) > 128 || !strings.HasPrefix(a.GetId(), "imp-") {
		t.Errorf("id = %q", a.GetId())
	}

	custOpts := CSVOptions{Kind: KindCustomers, Mapping: map[string]string{"customer_id": "id"}}
	c1 := onlyEvent(t, readCSV(t, "id,email\nc1,a@example.com\n", custOpts))
	c1again := onlyEvent(t, readCSV(t, "email,id\na@example.com,c1\n", custOpts))
	c2 := onlyEvent(t, readCSV(t, "id,email\nc1,b@example.com\n", custOpts))
	if c1.GetId() != c1again.GetId() {
		t.Errorf("same customer row, different ids")
	}
	if c1.GetId() == c2.GetId() {
		t.Errorf("a changed profile must be a new event")
	}
	order := onlyEvent(t, readCSV(t, "order_id,customer_id,refunded_at,amount\n1,c,2010-12-01T08:26:00Z,1.00\n",
		CSVOptions{Kind: KindRefunds, Currency: "GBP"}))
	if order.GetId() == a.GetId() {
		t.Errorf("order and refund keyed by the same order id share an id")
	}
}

func TestCSVOtherKinds(t *testing.T) {
	t.Run("customers with traits, locale and consent-free profile", func(t *testing.T) {
		input := "Customer ID,E-mail,Lang,TZ,Tier,Renewal,Ignored\n" +
			"c1, ana@example.com ,en_GB,Europe/London,gold,2025-09-01,secret\n"
		opts := CSVOptions{Kind: KindCustomers, Mapping: mustMapping(t,
			"customer_id=Customer ID,email=E-mail,locale=Lang,time_zone=TZ,trait.tier=Tier,trait.renewal_date=Renewal")}
		ev := onlyEvent(t, readCSV(t, input, opts))
		c := ev.GetCustomerUpdated()
		if c.GetCustomerId() != "c1" || c.GetEmail() != "ana@example.com" || c.GetLocale() != "en-GB" || c.GetTimeZone() != "Europe/London" {
			t.Errorf("got %v", c)
		}
		if len(c.GetTraits()) != 2 || c.GetTraits()["tier"] != "gold" || c.GetTraits()["renewal_date"] != "2025-09-01" {
			t.Errorf("traits = %v (unmapped columns must not become traits)", c.GetTraits())
		}
		if !ev.GetOccurredAt().AsTime().Equal(testNow) {
			t.Errorf("occurred_at = %v, want the import clock", ev.GetOccurredAt().AsTime())
		}
	})
	t.Run("customers invalid email points at its column", func(t *testing.T) {
		rows := readCSV(t, "customer_id,Mail\nc1,not-an-email\n", CSVOptions{Kind: KindCustomers, Mapping: map[string]string{"email": "Mail"}})
		var re *RowError
		if !errors.As(rows[0].Err, &re) || re.Field != "email" || re.Column != "Mail" {
			t.Errorf("err = %v", rows[0].Err)
		}
	})
	t.Run("customers bad trait points at its column", func(t *testing.T) {
		rows := readCSV(t, "customer_id,R\nc1,soon\n", CSVOptions{Kind: KindCustomers, Mapping: map[string]string{"trait.renewal_date": "R"}})
		var re *RowError
		if !errors.As(rows[0].Err, &re) || re.Field != "trait.renewal_date" || re.Column != "R" {
			t.Errorf("err = %v", rows[0].Err)
		}
	})
	t.Run("refunds with a currency column and a derived refund id", func(t *testing.T) {
		input := "order,cust,when,amt,cur\no1,c1,2024-03-01T10:00:00+01:00,5,jpy\no1,c1,2024-03-02T10:00:00Z,12.5,eur\n"
		opts := CSVOptions{Kind: KindRefunds, Mapping: mustMapping(t, "order_id=order,customer_id=cust,refunded_at=when,amount=amt,currency=cur")}
		rows := readCSV(t, input, opts)
		if len(rows) != 2 || rows[0].Err != nil || rows[1].Err != nil {
			t.Fatalf("rows = %+v", rows)
		}
		r0, r1 := rows[0].Event.GetOrderRefunded(), rows[1].Event.GetOrderRefunded()
		if r0.GetAmount().GetAmountMinor() != 5 || r0.GetAmount().GetCurrency() != "JPY" || r1.GetAmount().GetAmountMinor() != 1250 {
			t.Errorf("amounts: %v %v", r0.GetAmount(), r1.GetAmount())
		}
		if r0.GetRefundId() == "" || r0.GetRefundId() == r1.GetRefundId() {
			t.Errorf("refund ids %q %q must be set and distinct", r0.GetRefundId(), r1.GetRefundId())
		}
		if want := time.Date(2024, 3, 1, 9, 0, 0, 0, time.UTC); !rows[0].Event.GetOccurredAt().AsTime().Equal(want) {
			t.Errorf("zone in the value was not honoured: %v", rows[0].Event.GetOccurredAt().AsTime())
		}
	})
	t.Run("refunds zero amount fails validation on amount", func(t *testing.T) {
		rows := readCSV(t, "order_id,customer_id,refunded_at,amount,refund_id\no1,c1,2024-03-01T10:00:00Z,0.00,r1\n", CSVOptions{Kind: KindRefunds, Currency: "USD"})
		var re *RowError
		if !errors.As(rows[0].Err, &re) || re.Field != "amount" || !strings.Contains(re.Msg, "greater than 0") {
			t.Errorf("err = %v", rows[0].Err)
		}
	})
	t.Run("refunds unknown currency in a row", func(t *testing.T) {
		rows := readCSV(t, "order_id,customer_id,refunded_at,amount,currency\no1,c1,2024-03-01T10:00:00Z,1.00,XYZ\n", CSVOptions{Kind: KindRefunds})
		var re *RowError
		if !errors.As(rows[0].Err, &re) || re.Field != "currency" || re.Column != "currency" {
			t.Errorf("err = %v", rows[0].Err)
		}
	})
	t.Run("tickets categories", func(t *testing.T) {
		input := "ticket_id,customer_id,opened_at,category,subject\n" +
			"t1,c1,2024-03-01T10:00:00Z,Billing pricing,Charged twice\n" +
			"t2,c1,2024-03-01T10:00:00Z,TICKET_CATEGORY_DELIVERY,Late\n" +
			"t3,c1,2024-03-01T10:00:00Z,,No category\n" +
			"t4,c1,2024-03-01T10:00:00Z,shipping,?\n"
		rows := readCSV(t, input, CSVOptions{Kind: KindTickets})
		want := []eventsv1.TicketCategory{
			eventsv1.TicketCategory_TICKET_CATEGORY_BILLING_PRICING,
			eventsv1.TicketCategory_TICKET_CATEGORY_DELIVERY,
			eventsv1.TicketCategory_TICKET_CATEGORY_OTHER,
		}
		for i, w := range want {
			if rows[i].Err != nil || rows[i].Event.GetTicketOpened().GetCategory() != w {
				t.Errorf("row %d: %+v, want %v", i, rows[i], w)
			}
		}
		var re *RowError
		if !errors.As(rows[3].Err, &re) || re.Field != "category" || !strings.Contains(re.Msg, "billing_pricing, product, delivery, account, other") {
			t.Errorf("err = %v", rows[3].Err)
		}
	})
	t.Run("surveys with a kind column", func(t *testing.T) {
		input := "customer_id,kind,score,answered_at\nc1,NPS,9,2024-03-01T10:00:00Z\nc1,csat,6,2024-03-01T10:00:00Z\nc1,stars,3,2024-03-01T10:00:00Z\nc1,nps,9.5,2024-03-01T10:00:00Z\n"
		rows := readCSV(t, input, CSVOptions{Kind: KindSurveys})
		if rows[0].Err != nil || rows[0].Event.GetSurveyAnswered().GetScore() != 9 {
			t.Errorf("row 0: %+v", rows[0])
		}
		checks := []struct {
			i     int
			field string
			part  string
		}{{1, "score", "out of range for CSAT: must be 1-5"}, {2, "kind", "unknown survey kind"}, {3, "score", "not a whole number"}}
		for _, c := range checks {
			var re *RowError
			if !errors.As(rows[c.i].Err, &re) || re.Field != c.field || !strings.Contains(re.Msg, c.part) {
				t.Errorf("row %d: err = %v, want %s: %s", c.i, rows[c.i].Err, c.field, c.part)
			}
		}
	})
	t.Run("surveys with a fixed kind and content ids", func(t *testing.T) {
		input := "customer_id,score,answered_at\nc1,4,2024-03-01T10:00:00Z\n"
		csat := onlyEvent(t, readCSV(t, input, CSVOptions{Kind: KindSurveys, SurveyKind: "csat"}))
		nps := onlyEvent(t, readCSV(t, input, CSVOptions{Kind: KindSurveys, SurveyKind: "SURVEY_KIND_NPS"}))
		if csat.GetSurveyAnswered().GetKind() != eventsv1.SurveyKind_SURVEY_KIND_CSAT {
			t.Errorf("kind = %v", csat.GetSurveyAnswered().GetKind())
		}
		if csat.GetId() == nps.GetId() {
			t.Errorf("the survey kind must be part of the content id")
		}
	})
}

func TestCSVFieldsDocumentation(t *testing.T) {
	req, opt := Fields(KindCustomers)
	if strings.Join(req, ",") != "customer_id" || opt[len(opt)-1] != "trait.NAME" {
		t.Errorf("customers fields: %v %v", req, opt)
	}
	r, err := NewCSVReader(strings.NewReader("order_id,customer_id,placed_at,Total\n"), CSVOptions{Kind: KindOrders, Currency: "EUR", Mapping: map[string]string{"total": "Total"}})
	if err != nil {
		t.Fatal(err)
	}
	m := r.Mapping()
	if m["order_id"] != "order_id" || m["total"] != "Total" || len(m) != 4 {
		t.Errorf("Mapping() = %v", m)
	}
}
