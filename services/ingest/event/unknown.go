package event

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"

	eventsv1 "github.com/retainhq/retain/proto/gen/go/retain/events/v1"
	ingestv1 "github.com/retainhq/retain/proto/gen/go/retain/ingest/v1"
)

// UnknownFields returns an error naming the fields of ev that this ingest's
// retain.events.v1 schema does not have, or nil. Protobuf decoding keeps such
// fields (from a client built on a newer or forked .proto) as unknown fields,
// which Validate cannot see and Encode would publish as they came; the
// protojson decoding of the HTTP API refuses them, and so does this. The
// error is on the first message holding any, in field order, as the HTTP API
// reports the first unknown field: path in protojson form ("event" for the
// event itself), and every unknown field number in that message.
func UnknownFields(ev *eventsv1.Event) *ingestv1.FieldError {
	m := ev.ProtoReflect()
	// Every gRPC event comes here and almost none hold unknown fields:
	// unknownIn builds paths and sorts map keys as it goes, which only the
	// error needs.
	if !hasUnknown(m) {
		return nil
	}
	return unknownIn(m, "")
}

// hasUnknown reports whether m or any message in it holds unknown fields.
func hasUnknown(m protoreflect.Message) bool {
	if len(m.GetUnknown()) > 0 {
		return true
	}
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if fd.Message() == nil || !m.Has(fd) {
			continue
		}
		v := m.Get(fd)
		switch {
		case fd.IsMap():
			if fd.MapValue().Message() == nil {
				continue
			}
			found := false
			v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
				found = hasUnknown(mv.Message())
				return !found
			})
			if found {
				return true
			}
		case fd.IsList():
			l := v.List()
			for j := range l.Len() {
				if hasUnknown(l.Get(j).Message()) {
					return true
				}
			}
		default:
			if hasUnknown(v.Message()) {
				return true
			}
		}
	}
	return false
}

func unknownIn(m protoreflect.Message, path string) *ingestv1.FieldError {
	md := m.Descriptor()
	if raw := m.GetUnknown(); len(raw) > 0 {
		field := path
		if field == "" {
			field = "event"
		}
		nums := unknownNumbers(md, raw)
		what := "fields " + strings.Join(nums, ", ")
		if len(nums) == 1 {
			what = "field " + nums[0]
		}
		return fieldErr(field, "has %s not in this ingest's schema, whose %s has %s; ingest stores only fields it can check, so the event was not stored",
			what, md.FullName(), fieldNumbers(md.Fields()))
	}
	fields := md.Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if fd.Message() == nil || !m.Has(fd) {
			continue
		}
		fp := join(path, string(fd.Name()))
		v := m.Get(fd)
		switch {
		case fd.IsMap():
			if fd.MapValue().Message() == nil {
				continue
			}
			if fe := unknownInMap(v.Map(), fp); fe != nil {
				return fe
			}
		case fd.IsList():
			l := v.List()
			for j := range l.Len() {
				if fe := unknownIn(l.Get(j).Message(), fmt.Sprintf("%s[%d]", fp, j)); fe != nil {
					return fe
				}
			}
		default:
			if fe := unknownIn(v.Message(), fp); fe != nil {
				return fe
			}
		}
	}
	return nil
}

// unknownInMap looks at the message values of a map in key order, so that
// the error is the same for the same event.
func unknownInMap(mp protoreflect.Map, path string) *ingestv1.FieldError {
	keys := make([]protoreflect.MapKey, 0, mp.Len())
	mp.Range(func(k protoreflect.MapKey, _ protoreflect.Value) bool {
		keys = append(keys, k)
		return true
	})
	slices.SortFunc(keys, func(a, b protoreflect.MapKey) int { return strings.Compare(a.String(), b.String()) })
	for _, k := range keys {
		key := k.String()
		if _, ok := k.Interface().(string); ok {
			key = quote(key)
		}
		if fe := unknownIn(mp.Get(k).Message(), path+"["+key+"]"); fe != nil {
			return fe
		}
	}
	return nil
}

// unknownNumbers names the fields in raw, unknown fields of a message md as
// protobuf decoding kept them, each once and in order: by number ("99"),
// and with the wire type they came in for a number md has, which decoding
// keeps as unknown when the type differs ("1 as varint (id is string)").
func unknownNumbers(md protoreflect.MessageDescriptor, raw protoreflect.RawFields) []string {
	type field struct {
		num protowire.Number
		typ protowire.Type
	}
	var fields []field
	for len(raw) > 0 {
		num, typ, n := protowire.ConsumeField(raw)
		if n < 0 {
			// Not from a decoder, which keeps only whole fields: the
			// fields read so far are what can be named.
			break
		}
		raw = raw[n:]
		if !slices.ContainsFunc(fields, func(f field) bool { return f.num == num }) {
			fields = append(fields, field{num, typ})
		}
	}
	slices.SortFunc(fields, func(a, b field) int { return int(a.num) - int(b.num) })
	s := make([]string, len(fields))
	for i, f := range fields {
		s[i] = strconv.Itoa(int(f.num))
		if fd := md.Fields().ByNumber(f.num); fd != nil {
			s[i] += fmt.Sprintf(" as %s (%s is %s)", wireTypes[f.typ], fd.Name(), fd.Kind())
		}
	}
	return s
}

var wireTypes = map[protowire.Type]string{
	protowire.VarintType:     "varint",
	protowire.Fixed32Type:    "fixed32",
	protowire.Fixed64Type:    "fixed64",
	protowire.BytesType:      "length-delimited",
	protowire.StartGroupType: "group",
}

// fieldNumbers lists fields by number and name: "1 sku, 2 name".
func fieldNumbers(fields protoreflect.FieldDescriptors) string {
	s := make([]string, fields.Len())
	for i := range fields.Len() {
		s[i] = fmt.Sprintf("%d %s", fields.Get(i).Number(), fields.Get(i).Name())
	}
	return strings.Join(s, ", ")
}
