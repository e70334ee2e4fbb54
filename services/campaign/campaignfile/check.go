package campaignfile

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"

	campaignv1 "github.com/retainhq/retain/proto/gen/go/retain/campaign/v1"
)

// check walks a decoded file against the message it must fill and returns
// every field that cannot go into it, by its path in the file (`steps[1].
// send.channel`), in the file's own field names: an unknown field, a value
// of the wrong type, an enum name that does not exist, two fields of one
// oneof. protojson, which does the decoding, stops at the first problem
// and places it in an intermediate JSON text the user never wrote.
func check(md protoreflect.MessageDescriptor, doc map[string]any, path string) []string {
	var errs []string
	oneofs := map[protoreflect.Name]string{}
	keys := make([]string, 0, len(doc))
	for k := range doc {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		p := join(path, k)
		fd := md.Fields().ByName(protoreflect.Name(k))
		if fd == nil {
			fd = md.Fields().ByJSONName(k)
		}
		if fd == nil {
			errs = append(errs, fmt.Sprintf("%s: unknown field (%s has %s)", p, md.Name(), fieldNames(md)))
			continue
		}
		if why, ok := outputOnly[fd.FullName()]; ok {
			errs = append(errs, fmt.Sprintf("%s: is output only (%s): remove it", p, why))
			continue
		}
		if o := fd.ContainingOneof(); o != nil && !o.IsSynthetic() && doc[k] != nil {
			if prev, ok := oneofs[o.Name()]; ok {
				errs = append(errs, fmt.Sprintf("%s: set only one of %s and %s", join(path, string(o.Name())), prev, k))
			}
			oneofs[o.Name()] = k
		}
		errs = append(errs, checkField(fd, doc[k], p)...)
	}
	return errs
}

func checkField(fd protoreflect.FieldDescriptor, v any, path string) []string {
	if v == nil {
		return nil // protojson reads null as unset
	}
	switch {
	case fd.IsList():
		items, ok := v.([]any)
		if !ok {
			return []string{fmt.Sprintf("%s: want a list, got %s", path, describe(v))}
		}
		var errs []string
		for i, e := range items {
			errs = append(errs, checkValue(fd, e, fmt.Sprintf("%s[%d]", path, i))...)
		}
		return errs
	case fd.IsMap():
		m, ok := v.(map[string]any)
		if !ok {
			return []string{fmt.Sprintf("%s: want a mapping, got %s", path, describe(v))}
		}
		var errs []string
		for k, e := range m {
			errs = append(errs, checkValue(fd.MapValue(), e, join(path, k))...)
		}
		return errs
	}
	return checkValue(fd, v, path)
}

func checkValue(fd protoreflect.FieldDescriptor, v any, path string) []string {
	bad := func(want string) []string {
		return []string{fmt.Sprintf("%s: want %s, got %s", path, want, describe(v))}
	}
	switch fd.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		if fd.Message().FullName().Parent() == "google.protobuf" {
			return nil // well-known types have forms of their own; protojson checks them
		}
		m, ok := v.(map[string]any)
		if !ok {
			return bad("a mapping of " + string(fd.Message().Name()) + " fields")
		}
		return check(fd.Message(), m, path)
	case protoreflect.EnumKind:
		values := fd.Enum().Values()
		switch t := v.(type) {
		case string:
			if values.ByName(protoreflect.Name(t)) != nil {
				return nil
			}
		case int:
			// Enums are open: a number goes in as it is, and the
			// campaign's validation names one it does not know.
			if t >= math.MinInt32 && t <= math.MaxInt32 {
				return nil
			}
		}
		names := make([]string, 0, values.Len())
		for i := range values.Len() {
			if n := values.Get(i); n.Number() != 0 {
				names = append(names, string(n.Name()))
			}
		}
		return bad("one of " + strings.Join(names, ", "))
	case protoreflect.StringKind, protoreflect.BytesKind:
		if _, ok := v.(string); !ok {
			return bad("text (quote it)")
		}
	case protoreflect.BoolKind:
		if _, ok := v.(bool); !ok {
			return bad("true or false")
		}
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		switch v.(type) {
		case int, uint64, float64:
		default:
			return bad("a number")
		}
	default: // the integer kinds
		lo, hi := intRange(fd.Kind())
		var f float64
		switch t := v.(type) {
		case int:
			f = float64(t)
		case uint64:
			f = float64(t)
		case float64:
			f = t
		case string: // protojson's form of 64-bit integers
			n, err := strconv.ParseFloat(t, 64)
			if err != nil {
				return bad("a whole number")
			}
			f = n
		default:
			return bad("a whole number")
		}
		if f != math.Trunc(f) {
			return bad("a whole number")
		}
		if f < lo || f > hi {
			return bad(fmt.Sprintf("a whole number from %.0f to %.0f", lo, hi))
		}
	}
	return nil
}

// intRange is the values an integer kind holds.
func intRange(k protoreflect.Kind) (lo, hi float64) {
	switch k {
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return math.MinInt32, math.MaxInt32
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return 0, math.MaxUint32
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return 0, math.MaxUint64
	}
	return math.MinInt64, math.MaxInt64
}

// describe names a decoded YAML value for an error.
func describe(v any) string {
	switch t := v.(type) {
	case map[string]any:
		return "a mapping"
	case []any:
		return "a list"
	case string:
		return strconv.Quote(t)
	}
	return fmt.Sprint(v)
}

// outputOnly are the fields the service sets, with what sets them: a file
// that gives one is refused rather than have it ignored (`retain campaigns
// show` writes none of them), and the stored definition holds none
// (ClearOutputOnly). The one list of them.
var outputOnly = map[protoreflect.FullName]string{
	"retain.campaign.v1.Campaign.version":    "the service numbers the versions: 1 at creation, the next one at each apply that changes the campaign",
	"retain.campaign.v1.Campaign.playbook":   "the playbook a campaign was installed from",
	"retain.campaign.v1.Campaign.created_at": "the service stamps it",
	"retain.campaign.v1.Campaign.updated_at": "the service stamps it",
}

// ClearOutputOnly clears the fields of c that the service sets: a file
// may not give them, and the service fills them in from its rows when it
// answers, so a stored definition holds none.
func ClearOutputOnly(c *campaignv1.Campaign) {
	m := c.ProtoReflect()
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		if fd := fields.Get(i); outputOnly[fd.FullName()] != "" {
			m.Clear(fd)
		}
	}
}

// fieldNames are the fields of md a file may set.
func fieldNames(md protoreflect.MessageDescriptor) string {
	var names []string
	for i := range md.Fields().Len() {
		if fd := md.Fields().Get(i); outputOnly[fd.FullName()] == "" {
			names = append(names, string(fd.Name()))
		}
	}
	return strings.Join(names, ", ")
}

func join(path, k string) string {
	if path == "" {
		return k
	}
	return path + "." + k
}
