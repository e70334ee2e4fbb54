package importer

import (
	"crypto/sha256"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/retainhq/retain/platform/currency"
	eventsv1 "github.com/retainhq/retain/proto/gen/go/retain/events/v1"
	"github.com/retainhq/retain/services/ingest/event"
)

// Kind is what a CSV file holds, the first argument of `retain import`.
type Kind string

const (
	KindOrders    Kind = "orders"
	KindCustomers Kind = "customers"
	KindRefunds   Kind = "refunds"
	KindTickets   Kind = "tickets"
	KindSurveys   Kind = "surveys"
)

// Kinds lists the CSV kinds in the order help texts show them.
func Kinds() []Kind {
	return []Kind{KindOrders, KindCustomers, KindRefunds, KindTickets, KindSurveys}
}

// ParseKind checks a kind named on the command line.
func ParseKind(s string) (Kind, error) {
	k := Kind(strings.ToLower(strings.TrimSpace(s)))
	if _, ok := kindSpecs[k]; ok {
		return k, nil
	}
	return "", fmt.Errorf("unknown kind %q; valid CSV kinds: %s", s, joinKinds())
}

func joinKinds() string {
	names := make([]string, 0, len(kindSpecs))
	for _, k := range Kinds() {
		names = append(names, string(k))
	}
	return strings.Join(names, ", ")
}

// TraitPrefix introduces a trait field in a customers mapping:
// trait.tier=LoyaltyTier puts the LoyaltyTier column into traits["tier"].
const TraitPrefix = "trait."

// Fields returns the import fields of kind, required ones first, as
// documentation for --map.
func Fields(kind Kind) (required, optional []string) {
	spec, ok := kindSpecs[kind]
	if !ok {
		return nil, nil
	}
	for _, f := range spec.fields {
		if f.required {
			required = append(required, f.name)
		} else {
			optional = append(optional, f.name)
		}
	}
	if spec.traits {
		optional = append(optional, TraitPrefix+"NAME")
	}
	return required, optional
}

type fieldSpec struct {
	name     string
	required bool
}

type kindSpec struct {
	eventType string
	fields    []fieldSpec
	traits    bool
	// money and natural key handling.
	hasMoney   bool
	naturalKey string // field whose value identifies the record; "" = content
	// paths maps event field paths (protojson) to the import field they
	// come from, for error messages; the longest matching prefix wins.
	paths map[string]string
	build func(b *rowBuilder) *eventsv1.Event
}

// kindSpecs is a read-only table describing each CSV kind.
var kindSpecs = map[Kind]kindSpec{
	KindOrders: {
		eventType: event.TypeOrderPlaced,
		fields: []fieldSpec{
			{"order_id", true}, {"customer_id", true}, {"placed_at", true}, {"total", true},
			{"currency", false}, {"coupon_code", false},
		},
		hasMoney:   true,
		naturalKey: "order_id",
		paths: map[string]string{
			"occurred_at":                 "placed_at",
			"order_placed.customer_id":    "customer_id",
			"order_placed.order_id":       "order_id",
			"order_placed.total":          "total",
			"order_placed.total.currency": "currency",
			"order_placed.coupon_code":    "coupon_code",
		},
		build: buildOrder,
	},
	KindCustomers: {
		eventType: event.TypeCustomerUpdated,
		fields: []fieldSpec{
			{"customer_id", true}, {"email", false}, {"phone", false}, {"first_name", false},
			{"last_name", false}, {"locale", false}, {"time_zone", false}, {"updated_at", false},
		},
		traits: true,
		paths: map[string]string{
			"occurred_at":                  "updated_at",
			"customer_updated.customer_id": "customer_id",
			"customer_updated.email":       "email",
			"customer_updated.phone":       "phone",
			"customer_updated.first_name":  "first_name",
			"customer_updated.last_name":   "last_name",
			"customer_updated.locale":      "locale",
			"customer_updated.time_zone":   "time_zone",
		},
		build: buildCustomer,
	},
	KindRefunds: {
		eventType: event.TypeOrderRefunded,
		fields: []fieldSpec{
			{"order_id", true}, {"customer_id", true}, {"amount", true}, {"refunded_at", true},
			{"refund_id", false}, {"currency", false}, {"reason", false},
		},
		hasMoney:   true,
		naturalKey: "refund_id",
		paths: map[string]string{
			"occurred_at":                    "refunded_at",
			"order_refunded.customer_id":     "customer_id",
			"order_refunded.order_id":        "order_id",
			"order_refunded.refund_id":       "refund_id",
			"order_refunded.amount":          "amount",
			"order_refunded.amount.currency": "currency",
			"order_refunded.reason":          "reason",
		},
		build: buildRefund,
	},
	KindTickets: {
		eventType: event.TypeTicketOpened,
		fields: []fieldSpec{
			{"ticket_id", true}, {"customer_id", true}, {"opened_at", true},
			{"category", false}, {"subject", false},
		},
		naturalKey: "ticket_id",
		paths: map[string]string{
			"occurred_at":               "opened_at",
			"ticket_opened.customer_id": "customer_id",
			"ticket_opened.ticket_id":   "ticket_id",
			"ticket_opened.category":    "category",
			"ticket_opened.subject":     "subject",
		},
		build: buildTicket,
	},
	KindSurveys: {
		eventType: event.TypeSurveyAnswered,
		fields: []fieldSpec{
			{"customer_id", true}, {"score", true}, {"answered_at", true},
			{"kind", false}, {"survey_id", false}, {"comment", false},
		},
		paths: map[string]string{
			"occurred_at":                 "answered_at",
			"survey_answered.customer_id": "customer_id",
			"survey_answered.survey_id":   "survey_id",
			"survey_answered.kind":        "kind",
			"survey_answered.score":       "score",
			"survey_answered.comment":     "comment",
		},
		build: buildSurvey,
	},
}

// CSVOptions configures a CSV import.
type CSVOptions struct {
	Kind Kind
	// Mapping maps import fields to CSV column headers (see ParseMapping).
	// An import field that is not mapped is read from a column of the same
	// name when the header has one.
	Mapping map[string]string
	// Currency is the ISO 4217 code of money columns when no currency column
	// is mapped (orders, refunds).
	Currency string
	// TimeFormat is the Go time layout of date-time columns; default
	// time.RFC3339. Times without a zone in the layout are taken as UTC.
	TimeFormat string
	// SurveyKind ("nps" or "csat") applies to every row of a surveys file
	// that has no kind column.
	SurveyKind string
	// Source is set on every event; default "import:<kind>".
	Source string
	// Now is the clock Validate compares occurred_at against, and the
	// occurred_at of customers rows when no updated_at column is mapped.
	// Zero means time.Now().
	Now time.Time
}

// ParseMapping parses --map values such as
// "order_id=InvoiceNo,customer_id=customer,placed_at=at,total=total" into
// import field -> column. Several specs (repeated flags) are merged. Whether
// the fields exist is checked by NewCSVReader, which knows the kind.
func ParseMapping(specs ...string) (map[string]string, error) {
	m := map[string]string{}
	for _, spec := range specs {
		for _, pair := range strings.Split(spec, ",") {
			if strings.TrimSpace(pair) == "" {
				continue
			}
			field, column, ok := strings.Cut(pair, "=")
			field, column = strings.TrimSpace(field), strings.TrimSpace(column)
			if !ok || field == "" || column == "" {
				return nil, fmt.Errorf("--map: %q is not FIELD=COLUMN", strings.TrimSpace(pair))
			}
			if prev, dup := m[field]; dup {
				return nil, fmt.Errorf("--map: %s is mapped twice (to %q and %q)", field, prev, column)
			}
			m[field] = column
		}
	}
	return m, nil
}

// CSVReader streams events from a CSV file with a header row. Use it like
// bufio.Scanner: for r.Next() { row := r.Row() }; then r.Err().
type CSVReader struct {
	cr       *csv.Reader
	spec     kindSpec
	opts     CSVOptions
	columns  map[string]int    // import field -> column index
	names    map[string]string // import field -> column header
	fields   []string          // mapped import fields, sorted
	currency string            // default currency, upper case
	survey   eventsv1.SurveyKind
	// seen remembers, per event id, the content hash and line of records
	// with a natural key: a second row for the same order with other
	// content would be dropped by ingest as a duplicate, silently losing
	// data, so it is reported instead.
	seen map[string]seenRecord
	row  Row
	err  error
}

type seenRecord struct {
	line    int
	content [sha256.Size]byte
}

// OptionsError is a header that the options (the command's --map,
// --currency and --survey-kind) do not fit: the options must change, or
// the file is not the one meant.
type OptionsError struct{ msg string }

func (e *OptionsError) Error() string { return e.msg }

func optionsErrorf(format string, args ...any) error {
	return &OptionsError{msg: fmt.Sprintf(format, args...)}
}

// NewCSVReader reads the header row and checks the mapping against it and
// against the kind's fields. Errors name what is wrong and list what is
// valid: the available columns or the kind's fields. A header the options
// do not fit is an *OptionsError.
func NewCSVReader(r io.Reader, opts CSVOptions) (*CSVReader, error) {
	spec, ok := kindSpecs[opts.Kind]
	if !ok {
		return nil, fmt.Errorf("unknown kind %q; valid CSV kinds: %s", opts.Kind, joinKinds())
	}
	if opts.TimeFormat == "" {
		opts.TimeFormat = time.RFC3339
	}
	if opts.Source == "" {
		opts.Source = "import:" + string(opts.Kind)
	}
	if opts.Now.IsZero() {
		opts.Now = time.Now()
	}

	cr := csv.NewReader(r)
	cr.ReuseRecord = true
	header, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: the file is empty; a header row naming the columns is required", opts.Kind)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: read header row: %w", opts.Kind, err)
	}
	header = slices.Clone(header)
	if len(header) > 0 {
		// Spreadsheet exports often start with a UTF-8 byte order mark.
		header[0] = strings.TrimPrefix(header[0], "\ufeff")
	}
	index := map[string]int{}
	dupCols := map[string]bool{}
	for i, h := range header {
		h = strings.TrimSpace(h)
		header[i] = h
		if _, dup := index[h]; dup {
			dupCols[h] = true
			continue
		}
		index[h] = i
	}

	c := &CSVReader{
		cr: cr, spec: spec, opts: opts,
		columns: map[string]int{}, names: map[string]string{},
		seen: map[string]seenRecord{},
	}
	valid := map[string]bool{}
	for _, f := range spec.fields {
		valid[f.name] = true
	}
	available := strings.Join(quoteAll(header), ", ")
	for field, col := range opts.Mapping {
		isTrait := spec.traits && strings.HasPrefix(field, TraitPrefix) && len(field) > len(TraitPrefix)
		if !valid[field] && !isTrait {
			req, opt := Fields(opts.Kind)
			return nil, optionsErrorf("%s: unknown field %q in --map; valid fields: %s", opts.Kind, field, strings.Join(append(req, opt...), ", "))
		}
		i, ok := index[col]
		if !ok {
			return nil, optionsErrorf("%s: --map %s=%s: no column %q in the header; columns: %s", opts.Kind, field, col, col, available)
		}
		if dupCols[col] {
			return nil, optionsErrorf("%s: --map %s=%s: column %q appears more than once in the header", opts.Kind, field, col, col)
		}
		c.columns[field], c.names[field] = i, col
	}
	for _, f := range spec.fields {
		if _, mapped := c.columns[f.name]; mapped {
			continue
		}
		// A column named like the field needs no --map entry.
		if i, ok := index[f.name]; ok && !dupCols[f.name] {
			c.columns[f.name], c.names[f.name] = i, f.name
			continue
		}
		if f.required && !(f.name == "kind" && opts.SurveyKind != "") {
			return nil, optionsErrorf("%s: field %s is required: add --map %s=COLUMN; columns: %s", opts.Kind, f.name, f.name, available)
		}
	}
	for f := range c.columns {
		c.fields = append(c.fields, f)
	}
	sort.Strings(c.fields)

	if spec.hasMoney {
		if _, mapped := c.columns["currency"]; !mapped {
			cur := strings.ToUpper(strings.TrimSpace(opts.Currency))
			if cur == "" {
				return nil, optionsErrorf("%s: the currency is required: give --currency (e.g. GBP) or map a currency column", opts.Kind)
			}
			if !currency.Known(cur) {
				return nil, optionsErrorf("%s: --currency %q is not an ISO 4217 currency code", opts.Kind, opts.Currency)
			}
			c.currency = cur
		}
	}
	if opts.Kind == KindSurveys {
		if _, mapped := c.columns["kind"]; !mapped {
			k, err := parseSurveyKind(opts.SurveyKind)
			if err != nil {
				return nil, optionsErrorf("surveys: no kind column is mapped, so the survey kind must be given: %v", err)
			}
			c.survey = k
		}
	}
	return c, nil
}

func quoteAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = strconv.Quote(s)
	}
	return out
}

// Mapping returns the resolved import field -> column mapping, including
// fields found by name, for showing the user what will be read.
func (r *CSVReader) Mapping() map[string]string {
	out := make(map[string]string, len(r.names))
	for f, c := range r.names {
		out[f] = c
	}
	return out
}

// Next advances to the next record. It returns false at the end of the input
// or on a read error (see Err). Malformed records (bad quoting, wrong number
// of fields) are rows with an error, not the end of the import.
func (r *CSVReader) Next() bool {
	rec, err := r.cr.Read()
	if errors.Is(err, io.EOF) {
		return false
	}
	if err != nil {
		var pe *csv.ParseError
		if !errors.As(err, &pe) {
			r.err = fmt.Errorf("%s: read: %w", r.opts.Kind, err)
			return false
		}
		r.row = Row{Line: pe.StartLine, Err: &RowError{Line: pe.StartLine, Msg: csvErrorMessage(pe)}}
		return true
	}
	line, _ := r.cr.FieldPos(0)
	r.row = r.convert(line, rec)
	return true
}

func csvErrorMessage(pe *csv.ParseError) string {
	if errors.Is(pe.Err, csv.ErrFieldCount) {
		return "wrong number of fields: every row needs one field per header column"
	}
	if pe.Line > pe.StartLine {
		// An unbalanced quote made the reader take the following lines
		// into this row: say so, or line 8's loss goes unexplained.
		return fmt.Sprintf("a quoted field on this line is not closed where it should be, so lines %d-%d were read as one row and are all skipped (found at line %d, column %d: %v)",
			pe.StartLine, pe.Line, pe.Line, pe.Column, pe.Err)
	}
	return fmt.Sprintf("malformed CSV at column %d: %v", pe.Column, pe.Err)
}

// Row returns the record Next advanced to.
func (r *CSVReader) Row() Row { return r.row }

// Err returns the error that stopped reading, or nil at a clean end.
func (r *CSVReader) Err() error { return r.err }

// rowBuilder collects one record's values and problems.
type rowBuilder struct {
	r      *CSVReader
	line   int
	values map[string]string // import field -> trimmed cell
	errs   []error
}

func (b *rowBuilder) fail(field, format string, args ...any) {
	b.errs = append(b.errs, &RowError{Line: b.line, Field: field, Column: b.r.names[field], Msg: fmt.Sprintf(format, args...)})
}

// required returns the value of a required field, recording an error when
// it is empty.
func (b *rowBuilder) required(field string) string {
	v := b.values[field]
	if v == "" {
		b.fail(field, "is empty")
	}
	return v
}

func (b *rowBuilder) time(field string) *timestamppb.Timestamp {
	v := b.required(field)
	if v == "" {
		return nil
	}
	t, err := time.Parse(b.r.opts.TimeFormat, v)
	if err != nil {
		b.fail(field, "%s does not match the time format %q (set it with --time-format, a Go layout)", quoteValue(v), b.r.opts.TimeFormat)
		return nil
	}
	return timestamppb.New(t.UTC())
}

func (b *rowBuilder) money(field string) *eventsv1.Money {
	v := b.required(field)
	cur := b.r.currency
	if _, mapped := b.r.columns["currency"]; mapped {
		cur = strings.ToUpper(b.values["currency"])
		if cur == "" {
			b.fail("currency", "is empty")
			return nil
		}
		if !currency.Known(cur) {
			b.fail("currency", "%s is not an ISO 4217 currency code", quoteValue(cur))
			return nil
		}
	}
	if v == "" {
		return nil
	}
	amount, err := ParseAmount(v, cur)
	if err != nil {
		b.fail(field, "%v", err)
		return nil
	}
	return &eventsv1.Money{AmountMinor: amount, Currency: cur}
}

func (r *CSVReader) convert(line int, rec []string) Row {
	b := &rowBuilder{r: r, line: line, values: make(map[string]string, len(r.columns))}
	for f, i := range r.columns {
		b.values[f] = strings.TrimSpace(rec[i])
	}
	ev := r.spec.build(b)
	if len(b.errs) > 0 {
		return rowWithErrors(line, b.errs)
	}
	ev.Source = r.opts.Source
	ev.Type = r.spec.eventType

	content := r.content(b.values)
	if r.spec.naturalKey != "" && b.values[r.spec.naturalKey] != "" {
		ev.Id = DeriveID(r.spec.eventType, "key:"+b.values[r.spec.naturalKey])
		sum := sha256.Sum256([]byte(content))
		if prev, dup := r.seen[ev.Id]; dup && prev.content != sum {
			field := r.spec.naturalKey
			return rowWithErrors(line, []error{&RowError{Line: line, Field: field, Column: r.names[field],
				Msg: fmt.Sprintf("%s was already on line %d with different values; ingest keeps only the first (one row per %s: sum line items before importing)",
					quoteValue(b.values[field]), prev.line, strings.TrimSuffix(string(r.opts.Kind), "s"))}})
		} else if !dup {
			r.seen[ev.Id] = seenRecord{line: line, content: sum}
		}
	} else {
		ev.Id = DeriveID(r.spec.eventType, "content:"+content)
	}
	return finish(line, ev, r.opts.Now, func(path, msg string) (string, string, string) {
		f, col := r.fieldOf(path)
		if f != "" && strings.HasSuffix(path, ".amount_minor") {
			msg = r.amountProblem(b.values, f, msg)
		}
		return f, col, msg
	})
}

// amountProblem says ingest's problem with an amount in the file's terms:
// ingest counts minor units ("must not be negative, got -300"), the file
// has the amount as written ("-3"). Other problems keep ingest's words.
func (r *CSVReader) amountProblem(values map[string]string, field, msg string) string {
	written := values[field]
	cur := r.currency
	if cur == "" {
		cur = strings.ToUpper(values["currency"])
	}
	minor, err := ParseAmount(written, cur)
	if err != nil {
		return msg
	}
	switch {
	case minor < 0:
		return "must not be negative, got " + written
	case minor > event.MaxAmountMinor:
		return fmt.Sprintf("%s exceeds the sanity limit of %s %s", written, currency.Decimal(event.MaxAmountMinor, cur), cur)
	}
	return msg
}

func rowWithErrors(line int, errs []error) Row {
	if len(errs) == 1 {
		return Row{Line: line, Err: errs[0]}
	}
	return Row{Line: line, Err: errors.Join(errs...)}
}

// content is the record in a canonical form: the mapped import fields and
// their values in field order, plus the defaults that shape the event. It
// does not depend on the file name or on the order of columns.
func (r *CSVReader) content(values map[string]string) string {
	var sb strings.Builder
	for _, f := range r.fields {
		sb.WriteString(strconv.Quote(f))
		sb.WriteByte('=')
		sb.WriteString(strconv.Quote(values[f]))
		sb.WriteByte('\n')
	}
	if r.currency != "" {
		sb.WriteString("currency-default=" + r.currency + "\n")
	}
	if r.survey != eventsv1.SurveyKind_SURVEY_KIND_UNSPECIFIED {
		sb.WriteString("kind-default=" + r.survey.String() + "\n")
	}
	return sb.String()
}

// fieldOf maps a validation error's event path to the import field and
// column it came from.
func (r *CSVReader) fieldOf(path string) (string, string) {
	if strings.HasPrefix(path, "customer_updated.traits[") {
		key, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(path, "customer_updated.traits["), "]"))
		if err == nil {
			f := TraitPrefix + key
			return f, r.names[f]
		}
		return "traits", ""
	}
	best := ""
	for p := range r.spec.paths {
		if (path == p || strings.HasPrefix(path, p+".")) && len(p) > len(best) {
			best = p
		}
	}
	if best == "" {
		return "", ""
	}
	f := r.spec.paths[best]
	if _, mapped := r.columns[f]; !mapped && f == "currency" {
		return "currency", "" // came from --currency
	}
	return f, r.names[f]
}

func buildOrder(b *rowBuilder) *eventsv1.Event {
	o := &eventsv1.OrderPlaced{
		OrderId:    b.required("order_id"),
		CustomerId: b.required("customer_id"),
		Total:      b.money("total"),
		CouponCode: b.values["coupon_code"],
	}
	return &eventsv1.Event{OccurredAt: b.time("placed_at"), Payload: &eventsv1.Event_OrderPlaced{OrderPlaced: o}}
}

func buildCustomer(b *rowBuilder) *eventsv1.Event {
	c := &eventsv1.CustomerUpdated{
		CustomerId: b.required("customer_id"),
		Email:      b.values["email"],
		Phone:      b.values["phone"],
		FirstName:  b.values["first_name"],
		LastName:   b.values["last_name"],
		Locale:     b.values["locale"],
		TimeZone:   b.values["time_zone"],
	}
	for f, v := range b.values {
		if key, ok := strings.CutPrefix(f, TraitPrefix); ok && v != "" {
			if c.Traits == nil {
				c.Traits = map[string]string{}
			}
			c.Traits[key] = v
		}
	}
	occurred := timestamppb.New(b.r.opts.Now)
	if _, mapped := b.r.columns["updated_at"]; mapped {
		occurred = b.time("updated_at")
	}
	return &eventsv1.Event{OccurredAt: occurred, Payload: &eventsv1.Event_CustomerUpdated{CustomerUpdated: c}}
}

func buildRefund(b *rowBuilder) *eventsv1.Event {
	rf := &eventsv1.OrderRefunded{
		OrderId:    b.required("order_id"),
		CustomerId: b.required("customer_id"),
		RefundId:   b.values["refund_id"],
		Amount:     b.money("amount"),
		Reason:     b.values["reason"],
	}
	ev := &eventsv1.Event{OccurredAt: b.time("refunded_at"), Payload: &eventsv1.Event_OrderRefunded{OrderRefunded: rf}}
	if rf.RefundId == "" && len(b.errs) == 0 {
		// Several partial refunds of one order need distinct refund ids;
		// without a refund id column, a refund is identified by what it is.
		rf.RefundId = DeriveID(event.TypeOrderRefunded, "refund:"+b.r.content(b.values))
	}
	return ev
}

func buildTicket(b *rowBuilder) *eventsv1.Event {
	t := &eventsv1.TicketOpened{
		TicketId:   b.required("ticket_id"),
		CustomerId: b.required("customer_id"),
		Subject:    b.values["subject"],
	}
	if v := b.values["category"]; v != "" {
		cat, err := parseTicketCategory(v)
		if err != nil {
			b.fail("category", "%v", err)
		}
		t.Category = cat
	}
	return &eventsv1.Event{OccurredAt: b.time("opened_at"), Payload: &eventsv1.Event_TicketOpened{TicketOpened: t}}
}

func buildSurvey(b *rowBuilder) *eventsv1.Event {
	s := &eventsv1.SurveyAnswered{
		CustomerId: b.required("customer_id"),
		SurveyId:   b.values["survey_id"],
		Comment:    b.values["comment"],
		Kind:       b.r.survey,
	}
	if _, mapped := b.r.columns["kind"]; mapped {
		if v := b.required("kind"); v != "" {
			k, err := parseSurveyKind(v)
			if err != nil {
				b.fail("kind", "%v", err)
			}
			s.Kind = k
		}
	}
	if v := b.required("score"); v != "" {
		n, err := strconv.ParseInt(v, 10, 32)
		if err != nil {
			b.fail("score", "%s is not a whole number", quoteValue(v))
		}
		s.Score = int32(n)
	}
	return &eventsv1.Event{OccurredAt: b.time("answered_at"), Payload: &eventsv1.Event_SurveyAnswered{SurveyAnswered: s}}
}

// enumWord normalises "Billing pricing", "billing-pricing" and
// "TICKET_CATEGORY_BILLING_PRICING" alike.
func enumWord(s, prefix string) string {
	w := strings.ToUpper(strings.TrimSpace(s))
	w = strings.NewReplacer(" ", "_", "-", "_").Replace(w)
	return strings.TrimPrefix(w, prefix)
}

func parseTicketCategory(s string) (eventsv1.TicketCategory, error) {
	w := enumWord(s, "TICKET_CATEGORY_")
	if w != "UNSPECIFIED" {
		if v, ok := eventsv1.TicketCategory_value["TICKET_CATEGORY_"+w]; ok {
			return eventsv1.TicketCategory(v), nil
		}
	}
	return 0, fmt.Errorf("unknown ticket category %s; valid: billing_pricing, product, delivery, account, other", quoteValue(s))
}

func parseSurveyKind(s string) (eventsv1.SurveyKind, error) {
	w := enumWord(s, "SURVEY_KIND_")
	if w != "UNSPECIFIED" && w != "" {
		if v, ok := eventsv1.SurveyKind_value["SURVEY_KIND_"+w]; ok {
			return eventsv1.SurveyKind(v), nil
		}
	}
	return 0, fmt.Errorf("unknown survey kind %s; valid: nps (score 0-10), csat (score 1-5)", quoteValue(s))
}
