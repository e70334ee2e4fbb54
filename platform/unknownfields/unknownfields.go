// Package unknownfields finds the fields of a decoded protobuf message that
// its schema does not have. Protobuf decoding keeps such fields (from a
// client built on a newer or forked .proto) as unknown fields, which no
// handler sees: a filter, a limit or a dry-run flag a server lacks would be
// dropped without a word. Ingest refuses an event holding any
// (services/ingest/event), and platform/server refuses a gRPC request
// holding any (decision 0043).
package unknownfields

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Found is the first message, in field order, holding unknown fields.
type Found struct {
	// Path is where the message is, in protojson form from the message
	// walked: "" for that message itself, "order_placed.items[1]",
	// `traits.fields["b"]`.
	Path string
	// Message is the schema the fields are not in.
	Message protoreflect.MessageDescriptor
	// Fields are the unknown fields, each number once, in order.
	Fields []Field
}

// Field is one unknown field as decoding kept it.
type Field struct {
	Number protowire.Number
	Type   protowire.Type
	// Known is the message's field of that number when there is one:
	// decoding keeps a field of a known number as unknown when it came in
	// another wire type (a forked .proto). Nil for a number the message
	// does not have.
	Known protoreflect.FieldDescriptor
}

// String names the field: "16", or "1 as varint (id is string)" for a known
// number in another wire type.
func (f Field) String() string {
	s := strconv.Itoa(int(f.Number))
	if f.Known != nil {
		s += fmt.Sprintf(" as %s (%s is %s)", wireTypes[f.Type], f.Known.Name(), f.Known.Kind())
	}
	return s
}

// Numbers names the unknown fields for a message: "field 16" or "fields 16,
// 99".
func (f *Found) Numbers() string {
	s := make([]string, len(f.Fields))
	for i, fl := range f.Fields {
		s[i] = fl.String()
	}
	if len(s) == 1 {
		return "field " + s[0]
	}
	return "fields " + strings.Join(s, ", ")
}

// Schema lists the fields Message does have, by number and name: "1 sku,
// 2 name"; "no fields" when it has none.
func (f *Found) Schema() string {
	fields := f.Message.Fields()
	if fields.Len() == 0 {
		return "no fields"
	}
	s := make([]string, fields.Len())
	for i := range fields.Len() {
		s[i] = fmt.Sprintf("%d %s", fields.Get(i).Number(), fields.Get(i).Name())
	}
	return strings.Join(s, ", ")
}

// Skip tells the walk not to look into a field's messages: a handler that
// checks them itself, one by one, so that one item's unknown field does not
// refuse the request the item came in. Nil skips nothing.
type Skip func(protoreflect.FieldDescriptor) bool

// Find returns the first message in m (m itself, then its message fields in
// field order, list items in order and map values in key order, depth
// first) holding unknown fields, or nil. The answer is the same for the same
// message, whatever the order of its maps.
func Find(m protoreflect.Message, skip Skip) *Found {
	// Almost every message holds no unknown fields, and some paths (each
	// event ingest takes over gRPC) see thousands a second: the first look
	// allocates nothing; paths are built and map keys sorted only for an
	// answer.
	if !has(m, skip) {
		return nil
	}
	return find(m, "", skip)
}

// has reports whether m or any message in it holds unknown fields.
func has(m protoreflect.Message, skip Skip) bool {
	if len(m.GetUnknown()) > 0 {
		return true
	}
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if !holdsMessages(fd) || !m.Has(fd) || (skip != nil && skip(fd)) {
			continue
		}
		v := m.Get(fd)
		switch {
		case fd.IsMap():
			found := false
			v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
				found = has(mv.Message(), skip)
				return !found
			})
			if found {
				return true
			}
		case fd.IsList():
			l := v.List()
			for j := range l.Len() {
				if has(l.Get(j).Message(), skip) {
					return true
				}
			}
		default:
			if has(v.Message(), skip) {
				return true
			}
		}
	}
	return false
}

// holdsMessages reports whether fd's values are or hold messages, the only
// place unknown fields can be. Asked before m.Get, which allocates a view of
// a map or list.
func holdsMessages(fd protoreflect.FieldDescriptor) bool {
	if fd.IsMap() {
		return fd.MapValue().Message() != nil
	}
	return fd.Message() != nil
}

func find(m protoreflect.Message, path string, skip Skip) *Found {
	md := m.Descriptor()
	if raw := m.GetUnknown(); len(raw) > 0 {
		return &Found{Path: path, Message: md, Fields: unknownFields(md, raw)}
	}
	fields := md.Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if !holdsMessages(fd) || !m.Has(fd) || (skip != nil && skip(fd)) {
			continue
		}
		fp := string(fd.Name())
		if path != "" {
			fp = path + "." + fp
		}
		v := m.Get(fd)
		switch {
		case fd.IsMap():
			if f := findInMap(v.Map(), fp, skip); f != nil {
				return f
			}
		case fd.IsList():
			l := v.List()
			for j := range l.Len() {
				if f := find(l.Get(j).Message(), fmt.Sprintf("%s[%d]", fp, j), skip); f != nil {
					return f
				}
			}
		default:
			if f := find(v.Message(), fp, skip); f != nil {
				return f
			}
		}
	}
	return nil
}

// SortedKeys is a map's keys in order, so that what a walk of it reports
// is the same for the same message.
func SortedKeys(mp protoreflect.Map) []protoreflect.MapKey {
	keys := make([]protoreflect.MapKey, 0, mp.Len())
	mp.Range(func(k protoreflect.MapKey, _ protoreflect.Value) bool {
		keys = append(keys, k)
		return true
	})
	slices.SortFunc(keys, func(a, b protoreflect.MapKey) int { return strings.Compare(a.String(), b.String()) })
	return keys
}

// findInMap looks at the message values of a map in key order.
func findInMap(mp protoreflect.Map, path string, skip Skip) *Found {
	for _, k := range SortedKeys(mp) {
		if f := find(mp.Get(k).Message(), path+"["+PathKey(k)+"]", skip); f != nil {
			return f
		}
	}
	return nil
}

// PathKey is a map key as a path writes it between brackets: a string
// quoted and cut to 64 bytes (the key is the sender's and the path goes into
// an error message), any other key as it is.
func PathKey(k protoreflect.MapKey) string {
	s, ok := k.Interface().(string)
	if !ok {
		return k.String()
	}
	const max = 64
	if len(s) <= max {
		return strconv.Quote(s)
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return strconv.Quote(s[:cut]) + "..."
}

// unknownFields reads raw, the unknown fields of a message md as decoding
// kept them: each number once, in order.
func unknownFields(md protoreflect.MessageDescriptor, raw protoreflect.RawFields) []Field {
	var fields []Field
	for len(raw) > 0 {
		num, typ, n := protowire.ConsumeField(raw)
		if n < 0 {
			// Not from a decoder, which keeps only whole fields: the
			// fields read so far are what can be named.
			break
		}
		raw = raw[n:]
		if !slices.ContainsFunc(fields, func(f Field) bool { return f.Number == num }) {
			fields = append(fields, Field{Number: num, Type: typ, Known: md.Fields().ByNumber(num)})
		}
	}
	slices.SortFunc(fields, func(a, b Field) int { return int(a.Number) - int(b.Number) })
	return fields
}

var wireTypes = map[protowire.Type]string{
	protowire.VarintType:     "varint",
	protowire.Fixed32Type:    "fixed32",
	protowire.Fixed64Type:    "fixed64",
	protowire.BytesType:      "length-delimited",
	protowire.StartGroupType: "group",
}
