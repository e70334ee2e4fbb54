package server

import (
	"fmt"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/retainhq/retain/platform/unknownfields"
)

// maxValueViolations bounds the violations one refusal lists: a batch can
// hold thousands of bad strings, and the first few say what to fix.
const maxValueViolations = 10

// refuseBadValues is the INVALID_ARGUMENT for a request holding a value
// no handler can act on, or nil (decision 0049):
//   - a string holding a NUL byte: Postgres cannot store one in text, so a
//     handler that looks the value up or stores it failed with INTERNAL.
//     Other control characters are stored as they are (a template body has
//     newlines and tabs); each field's own rules refuse them where they do
//     not belong.
//   - an enum number the schema lacks, from a client built on a newer
//     .proto or a mistake: a handler comparing against the values it knows
//     took it for unset ("is required") or matched nothing (an empty list).
//
// Every such value is named by its path, up to maxValueViolations.
func refuseBadValues(req any, skip unknownfields.Skip) error {
	m, ok := req.(proto.Message)
	if !ok {
		return nil
	}
	// Almost every request is clean, and ingest's arrive thousands a
	// second: the first walk builds no paths and stops at the first bad
	// value; only a refusal walks again to name them all.
	first := &valueWalk{skip: skip}
	if !first.message(m.ProtoReflect(), "") {
		return nil
	}
	all := &valueWalk{skip: skip, collect: true}
	all.message(m.ProtoReflect(), "")
	return InvalidArgument(all.found...)
}

// valueWalk looks for bad values in a message, depth first in field order,
// list items in order and map entries in key order, leaving out the
// fields skip names (their handler checks each item itself).
type valueWalk struct {
	skip unknownfields.Skip
	// collect builds paths and gathers the violations; without it the walk
	// stops at the first bad value.
	collect bool
	found   []FieldViolation
}

// message reports whether the walk is to stop: a bad value found when not
// collecting, or enough collected.
func (w *valueWalk) message(m protoreflect.Message, path string) bool {
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		switch fd.Kind() {
		case protoreflect.StringKind, protoreflect.EnumKind, protoreflect.MessageKind, protoreflect.GroupKind:
		default:
			continue // asked before m.Get, which allocates a view of a list
		}
		if !m.Has(fd) || (fd.Message() != nil && w.skip != nil && w.skip(fd)) {
			continue
		}
		fp := ""
		if w.collect {
			fp = string(fd.Name())
			if path != "" {
				fp = path + "." + fp
			}
		}
		v := m.Get(fd)
		switch {
		case fd.IsMap():
			if w.mapEntries(fd, v.Map(), fp) {
				return true
			}
		case fd.IsList():
			l := v.List()
			for j := range l.Len() {
				ip := ""
				if w.collect {
					ip = fmt.Sprintf("%s[%d]", fp, j)
				}
				if w.value(fd, l.Get(j), ip) {
					return true
				}
			}
		default:
			if w.value(fd, v, fp) {
				return true
			}
		}
	}
	return false
}

func (w *valueWalk) mapEntries(fd protoreflect.FieldDescriptor, mp protoreflect.Map, path string) bool {
	if !w.collect {
		stop := false
		mp.Range(func(k protoreflect.MapKey, v protoreflect.Value) bool {
			stop = w.entry(fd, k, v, "")
			return !stop
		})
		return stop
	}
	for _, k := range unknownfields.SortedKeys(mp) {
		if w.entry(fd, k, mp.Get(k), path+"["+unknownfields.PathKey(k)+"]") {
			return true
		}
	}
	return false
}

func (w *valueWalk) entry(fd protoreflect.FieldDescriptor, k protoreflect.MapKey, v protoreflect.Value, path string) bool {
	if fd.MapKey().Kind() == protoreflect.StringKind {
		if at := strings.IndexByte(k.String(), 0); at >= 0 && w.bad(path, fmt.Sprintf("the key holds a NUL byte (\\x00) at byte %d, which text must not contain", at)) {
			return true
		}
	}
	return w.value(fd.MapValue(), v, path)
}

// value checks one value of fd: a field's, a list item's or a map value's.
func (w *valueWalk) value(fd protoreflect.FieldDescriptor, v protoreflect.Value, path string) bool {
	switch fd.Kind() {
	case protoreflect.StringKind:
		if at := strings.IndexByte(v.String(), 0); at >= 0 {
			return w.bad(path, fmt.Sprintf("holds a NUL byte (\\x00) at byte %d, which text must not contain", at))
		}
	case protoreflect.EnumKind:
		if fd.Enum().Values().ByNumber(v.Enum()) == nil {
			return w.bad(path, unknownEnumValue(fd.Enum(), v.Enum()))
		}
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return w.message(v.Message(), path)
	}
	return false
}

func (w *valueWalk) bad(path, description string) bool {
	if !w.collect {
		return true
	}
	w.found = append(w.found, FieldViolation{Field: path, Description: description})
	return len(w.found) >= maxValueViolations
}

// unknownEnumValue describes an enum number the schema lacks, as ingest
// describes an event's: "unknown value 99; valid: CHANNEL_EMAIL,
// CHANNEL_SMS", leaving out a zero value named *_UNSPECIFIED, which means
// unset.
func unknownEnumValue(ed protoreflect.EnumDescriptor, n protoreflect.EnumNumber) string {
	vals := ed.Values()
	names := make([]string, 0, vals.Len())
	for i := range vals.Len() {
		ev := vals.Get(i)
		if ev.Number() == 0 && strings.HasSuffix(string(ev.Name()), "_UNSPECIFIED") {
			continue
		}
		names = append(names, string(ev.Name()))
	}
	return fmt.Sprintf("unknown value %d; valid: %s", n, strings.Join(names, ", "))
}
