package event

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"

	eventsv1 "github.com/retainhq/retain/proto/gen/go/retain/events/v1"
	ingestv1 "github.com/retainhq/retain/proto/gen/go/retain/ingest/v1"
)

// MaxBatchEvents is the most events one request may carry.
const MaxBatchEvents = 500

var (
	// ErrTooManyEvents is returned (wrapped) by DecodeBatch when the body holds
	// more than MaxBatchEvents events.
	ErrTooManyEvents = fmt.Errorf("more than %d events in one request", MaxBatchEvents)
	// ErrInvalidBody is matched (errors.Is) by every DecodeBatch error that is
	// the client's fault other than ErrTooManyEvents: not JSON, no "events"
	// array, unknown top-level fields. An error matching neither came from
	// reading the body (e.g. *http.MaxBytesError, a dropped connection).
	ErrInvalidBody = errors.New("invalid request body")
)

type bodyError struct{ msg string }

func (e *bodyError) Error() string        { return "body: " + e.msg }
func (e *bodyError) Is(target error) bool { return target == ErrInvalidBody }

func bodyErrorf(format string, args ...any) error {
	return &bodyError{msg: fmt.Sprintf(format, args...)}
}

// DecodeError is an event of a batch that could not be decoded. The rest of the
// batch is unaffected.
type DecodeError struct {
	// Index is the event's position in the request's "events" array.
	Index int
	// Field is the protojson path of the offending field (proto names, e.g.
	// "order_placed.total.amount_minor"), or "" when the event as a whole is
	// malformed.
	Field string
	// Message says what is wrong, e.g. "must be an integer, got 12.5".
	Message string
	// ID is the event's "id" when it could still be read from the element
	// (see LenientID), else "". Clients correlate results by id, so a
	// rejection should name it even when the rest of the event is malformed.
	ID string
}

func (e *DecodeError) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("events[%d]: %s", e.Index, e.Message)
	}
	return fmt.Sprintf("events[%d].%s: %s", e.Index, e.Field, e.Message)
}

// FieldError converts e into the API's FieldError (its index goes into the
// EventResult).
func (e *DecodeError) FieldError() *ingestv1.FieldError {
	return &ingestv1.FieldError{Field: e.Field, Description: e.Message}
}

// FieldErrorsByIndex groups decode errors by event index, the shape the
// ingest use case takes alongside the decoded events.
func FieldErrorsByIndex(errs []DecodeError) map[int][]*ingestv1.FieldError {
	if len(errs) == 0 {
		return nil
	}
	m := make(map[int][]*ingestv1.FieldError, len(errs))
	for i := range errs {
		m[errs[i].Index] = append(m[errs[i].Index], errs[i].FieldError())
	}
	return m
}

// DecodeBatch reads a POST /v1/events body, {"events": [ ... ]}, where each
// element is the protojson form of an Event (proto or lowerCamel field names).
//
// It returns one entry per element of "events", in order; an element that
// cannot be decoded is nil in events and described by a DecodeError carrying
// its index, so the rest of the batch can still be accepted. The error is for
// the request as a whole (nothing is decoded then): ErrTooManyEvents, an error
// matching ErrInvalidBody, or a read error from r. An empty "events" array is
// not an error.
func DecodeBatch(r io.Reader) ([]*eventsv1.Event, []DecodeError, error) {
	raws, err := splitBatch(r)
	if err != nil {
		return nil, nil, err
	}
	events := make([]*eventsv1.Event, len(raws))
	var bad []DecodeError
	for i, raw := range raws {
		ev, fe := UnmarshalEvent(raw)
		if fe != nil {
			bad = append(bad, DecodeError{Index: i, Field: fe.GetField(), Message: fe.GetDescription(), ID: LenientID(raw)})
			continue
		}
		events[i] = ev
	}
	return events, bad, nil
}

// LenientID reads just the top-level "id" of an event's JSON, for naming an
// event that failed to decode. It is "" unless raw is an object with exactly
// one "id" key (the name protojson accepts) whose value is a string that
// decodes exactly: valid UTF-8, no escape turned into U+FFFD. Other fields
// are not looked at, so it succeeds whatever else is wrong with the event.
func LenientID(raw []byte) string {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return ""
	}
	var id string
	found := false
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return ""
		}
		key, _ := tok.(string)
		var val json.RawMessage
		if err := dec.Decode(&val); err != nil {
			return ""
		}
		if key != "id" {
			continue
		}
		if found {
			return "" // given twice: which one the client meant is unclear
		}
		found = true
		if jsonKind(val) != "a string" || !utf8.Valid(val) || json.Unmarshal(val, &id) != nil || strings.ContainsRune(id, utf8.RuneError) {
			return ""
		}
	}
	return id
}

// splitBatch makes one pass over the body with a streaming decoder and returns
// the raw elements of "events", so each event is parsed (and fails) on its own.
func splitBatch(r io.Reader) ([]json.RawMessage, error) {
	dec := json.NewDecoder(r)
	tok, err := dec.Token()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, bodyErrorf(`is empty; expected {"events": [...]}`)
		}
		return nil, jsonError(dec, err)
	}
	if tok != json.Delim('{') {
		return nil, bodyErrorf(`must be a JSON object {"events": [...]}, got %s`, tokenKind(tok))
	}
	var raws []json.RawMessage
	seen := false
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, jsonError(dec, err)
		}
		key, _ := tok.(string)
		if key != "events" {
			return nil, bodyErrorf(`unknown field %s; the body is {"events": [...]}`, quote(key))
		}
		if seen {
			return nil, bodyErrorf(`"events" appears more than once`)
		}
		seen = true
		tok, err = dec.Token()
		if err != nil {
			return nil, jsonError(dec, err)
		}
		if tok != json.Delim('[') {
			return nil, bodyErrorf(`"events" must be an array, got %s`, tokenKind(tok))
		}
		for dec.More() {
			if len(raws) == MaxBatchEvents {
				return nil, fmt.Errorf("body: %w", ErrTooManyEvents)
			}
			var raw json.RawMessage
			if err := dec.Decode(&raw); err != nil {
				return nil, jsonError(dec, err)
			}
			raws = append(raws, raw)
		}
		if _, err := dec.Token(); err != nil { // ']'
			return nil, jsonError(dec, err)
		}
	}
	if _, err := dec.Token(); err != nil { // '}'
		return nil, jsonError(dec, err)
	}
	if !seen {
		return nil, bodyErrorf(`"events" is required: {"events": [...]}`)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		if err != nil {
			return nil, jsonError(dec, err)
		}
		return nil, bodyErrorf("unexpected data after the JSON object at offset %d", dec.InputOffset())
	}
	return raws, nil
}

func jsonError(dec *json.Decoder, err error) error {
	var syn *json.SyntaxError
	switch {
	case errors.As(err, &syn):
		return bodyErrorf("invalid JSON at offset %d: %s", syn.Offset, syn.Error())
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return bodyErrorf("invalid JSON: unexpected end at offset %d", dec.InputOffset())
	default:
		return fmt.Errorf("body: read: %w", err)
	}
}

func tokenKind(tok json.Token) string {
	switch v := tok.(type) {
	case json.Delim:
		if v == '{' {
			return "an object"
		}
		return "an array"
	case string:
		return "a string"
	case float64, json.Number:
		return "a number"
	case bool:
		return "a boolean"
	case nil:
		return "null"
	}
	return fmt.Sprintf("%T", tok)
}

// unmarshalOptions keeps unknown fields an error: a misspelled field must not
// silently lose data.
var unmarshalOptions = protojson.UnmarshalOptions{DiscardUnknown: false}

// UnmarshalEvent decodes the protojson form of one Event. When it fails, the
// FieldError names the offending field (protojson path, "" for the event as a
// whole) and says what is wrong in words a client can act on; protojson's own
// error names only the innermost field.
func UnmarshalEvent(data []byte) (*eventsv1.Event, *ingestv1.FieldError) {
	ev := &eventsv1.Event{}
	err := unmarshalOptions.Unmarshal(data, ev)
	if err == nil {
		return ev, nil
	}
	var syn *json.SyntaxError
	if jerr := json.Unmarshal(data, new(json.RawMessage)); errors.As(jerr, &syn) {
		return nil, fieldErr("", "invalid JSON at offset %d: %s", syn.Offset, syn.Error())
	} else if jerr != nil {
		return nil, fieldErr("", "invalid JSON: %v", jerr)
	}
	if fe := diagnose(data, ev.ProtoReflect().Descriptor(), ""); fe != nil {
		return nil, fe
	}
	// Our walk found nothing protojson objects to; its message is the best
	// we have.
	return nil, &ingestv1.FieldError{Description: strings.TrimPrefix(err.Error(), "proto: ")}
}

// diagnose walks raw alongside the message descriptor md and returns the
// first problem protojson would reject, with its full path. It only runs on
// the error path, so it favours clarity over speed. Recursion follows message
// fields of the schema, so its depth is bounded by the schema, not the input.
func diagnose(raw []byte, md protoreflect.MessageDescriptor, path string) *ingestv1.FieldError {
	raw = bytes.TrimSpace(raw)
	if kind := jsonKind(raw); kind != "an object" {
		what := "must be a JSON object"
		if path == "" {
			what = "an event must be a JSON object"
		}
		return fieldErr(path, "%s, got %s", what, kind)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	if _, err := dec.Token(); err != nil {
		return nil
	}
	seen := map[protoreflect.FieldNumber]string{}
	oneofs := map[protoreflect.FullName]string{}
	fields := md.Fields()
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil
		}
		key, _ := tok.(string)
		var val json.RawMessage
		if err := dec.Decode(&val); err != nil {
			return nil
		}
		fd := fields.ByJSONName(key)
		if fd == nil {
			fd = fields.ByTextName(key)
		}
		if fd == nil {
			return fieldErr(join(path, key), "unknown field %s; known fields: %s", quote(key), fieldNames(fields))
		}
		fp := join(path, string(fd.Name()))
		if prev, dup := seen[fd.Number()]; dup {
			return fieldErr(fp, "set more than once (as %s and %s)", strconv.Quote(prev), strconv.Quote(key))
		}
		seen[fd.Number()] = key
		if od := fd.ContainingOneof(); od != nil && !od.IsSynthetic() && jsonKind(val) != "null" {
			if prev, dup := oneofs[od.FullName()]; dup {
				return fieldErr(join(path, string(od.Name())), "only one of %s may be set; got %s and %s",
					oneofNames(od), prev, fd.Name())
			}
			oneofs[od.FullName()] = string(fd.Name())
		}
		if fe := diagnoseField(md, fd, key, val, fp); fe != nil {
			return fe
		}
	}
	return nil
}

func diagnoseField(md protoreflect.MessageDescriptor, fd protoreflect.FieldDescriptor, key string, val json.RawMessage, fp string) *ingestv1.FieldError {
	kind := jsonKind(val)
	if kind == "null" {
		return nil // protojson treats null as "not set"
	}
	switch {
	case fd.IsMap():
		if kind != "an object" {
			return fieldErr(fp, "must be a JSON object, got %s", kind)
		}
		return diagnoseMap(md, fd, key, val, fp)
	case fd.IsList():
		if kind != "an array" {
			return fieldErr(fp, "must be an array, got %s", kind)
		}
		var elems []json.RawMessage
		if err := json.Unmarshal(val, &elems); err != nil {
			return nil
		}
		for i, el := range elems {
			ep := fmt.Sprintf("%s[%d]", fp, i)
			if isPlainMessage(fd) {
				if fe := diagnose(el, fd.Message(), ep); fe != nil {
					return fe
				}
				continue
			}
			if !probe(md, key, wrapArray(el)) {
				return describe(fd, el, ep)
			}
		}
		return nil
	case isPlainMessage(fd):
		return diagnose(val, fd.Message(), fp)
	default:
		if !probe(md, key, val) {
			return describe(fd, val, fp)
		}
		return nil
	}
}

func diagnoseMap(md protoreflect.MessageDescriptor, fd protoreflect.FieldDescriptor, key string, val json.RawMessage, fp string) *ingestv1.FieldError {
	dec := json.NewDecoder(bytes.NewReader(val))
	if _, err := dec.Token(); err != nil {
		return nil
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil
		}
		k, _ := tok.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil
		}
		ep := fp + "[" + quote(k) + "]"
		if seen[k] {
			return fieldErr(ep, "key appears more than once")
		}
		seen[k] = true
		kb, _ := json.Marshal(k)
		entry := append(append(append([]byte{'{'}, kb...), ':'), v...)
		entry = append(entry, '}')
		if !probe(md, key, entry) {
			return describe(fd.MapValue(), v, ep)
		}
	}
	return nil
}

// isPlainMessage reports whether fd holds a message we recurse into, as
// opposed to a well-known type with a special JSON form (Timestamp).
func isPlainMessage(fd protoreflect.FieldDescriptor) bool {
	return fd.Message() != nil && !fd.IsMap() && fd.Message().FullName().Parent() != "google.protobuf"
}

// probe reports whether protojson accepts {key: val} for a message of type md,
// which checks one field with exactly protojson's rules.
func probe(md protoreflect.MessageDescriptor, key string, val []byte) bool {
	kb, _ := json.Marshal(key)
	doc := make([]byte, 0, len(kb)+len(val)+3)
	doc = append(doc, '{')
	doc = append(doc, kb...)
	doc = append(doc, ':')
	doc = append(doc, val...)
	doc = append(doc, '}')
	return unmarshalOptions.Unmarshal(doc, dynamicpb.NewMessage(md)) == nil
}

func wrapArray(el []byte) []byte {
	out := make([]byte, 0, len(el)+2)
	out = append(out, '[')
	out = append(out, el...)
	return append(out, ']')
}

// describe says why protojson rejected val for fd.
func describe(fd protoreflect.FieldDescriptor, val json.RawMessage, fp string) *ingestv1.FieldError {
	val = bytes.TrimSpace(val)
	kind := jsonKind(val)
	if kind == "a string" && !utf8.Valid(val) {
		return fieldErr(fp, "must be valid UTF-8")
	}
	got := showValue(val)
	switch fd.Kind() {
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind,
		protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind,
		protoreflect.Uint32Kind, protoreflect.Fixed32Kind, protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		what := "must be an integer"
		if isMoneyAmount(fd) {
			what = "must be an integer number of minor units (e.g. cents)"
		}
		if kind == "a number" && isIntegerLiteral(val) {
			return fieldErr(fp, "%s is out of range for a %s", got, intKindName(fd.Kind()))
		}
		return fieldErr(fp, "%s, got %s", what, got)
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		return fieldErr(fp, "must be a number, got %s", got)
	case protoreflect.BoolKind:
		return fieldErr(fp, "must be true or false, got %s", got)
	case protoreflect.StringKind:
		return fieldErr(fp, "must be a string, got %s", got)
	case protoreflect.BytesKind:
		return fieldErr(fp, "must be a base64 string, got %s", got)
	case protoreflect.EnumKind:
		if kind == "a number" {
			return fieldErr(fp, "%s is not a valid enum number; valid: %s", got, enumNames(fd.Enum()))
		}
		return fieldErr(fp, "unknown value %s; valid: %s", strings.TrimPrefix(got, "the string "), enumNames(fd.Enum()))
	case protoreflect.MessageKind, protoreflect.GroupKind:
		if fd.Message().FullName() == "google.protobuf.Timestamp" {
			return fieldErr(fp, "must be an RFC 3339 timestamp between years 0001 and 9999 with a zone, e.g. \"2024-05-01T12:00:00Z\" or \"2024-05-01T14:00:00+02:00\", got %s", got)
		}
		return fieldErr(fp, "invalid value %s", got)
	}
	return fieldErr(fp, "invalid value %s", got)
}

func isMoneyAmount(fd protoreflect.FieldDescriptor) bool {
	return fd.Name() == "amount_minor" &&
		fd.ContainingMessage() != nil &&
		fd.ContainingMessage().FullName() == (&eventsv1.Money{}).ProtoReflect().Descriptor().FullName()
}

func isIntegerLiteral(val []byte) bool {
	s := strings.TrimPrefix(string(val), "-")
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func intKindName(k protoreflect.Kind) string {
	switch k {
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return "32-bit integer"
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return "32-bit unsigned integer"
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return "64-bit unsigned integer"
	}
	return "64-bit integer"
}

func enumNames(ed protoreflect.EnumDescriptor) string {
	vals := ed.Values()
	names := make([]string, 0, vals.Len())
	for i := range vals.Len() {
		names = append(names, string(vals.Get(i).Name()))
	}
	return strings.Join(names, ", ")
}

func fieldNames(fields protoreflect.FieldDescriptors) string {
	names := make([]string, 0, fields.Len())
	for i := range fields.Len() {
		names = append(names, string(fields.Get(i).Name()))
	}
	return strings.Join(names, ", ")
}

func oneofNames(od protoreflect.OneofDescriptor) string {
	fields := od.Fields()
	names := make([]string, 0, fields.Len())
	for i := range fields.Len() {
		names = append(names, string(fields.Get(i).Name()))
	}
	return strings.Join(names, ", ")
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

func fieldErr(field, format string, args ...any) *ingestv1.FieldError {
	return &ingestv1.FieldError{Field: field, Description: fmt.Sprintf(format, args...)}
}

func jsonKind(raw []byte) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "nothing"
	}
	switch raw[0] {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "a number"
}

// showValue renders a JSON value for a message: scalars as written (cut
// short), containers by kind.
func showValue(raw []byte) string {
	switch k := jsonKind(raw); k {
	case "an object", "an array", "nothing":
		return k
	case "a string":
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "a string"
		}
		return "the string " + quote(s)
	}
	s := string(raw)
	if len(s) > 64 {
		s = s[:64] + "..."
	}
	return s
}
