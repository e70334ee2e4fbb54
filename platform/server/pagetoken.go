package server

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// A list RPC's next_page_token is the position after the page's last row
// (the cursor, a small struct of the service's) sealed with a fingerprint
// of the request it continues: the request's message type and each of its
// fields but page_token and page_size (decision 0050). A client that pages
// one query with another's token would otherwise get rows skipped or an
// empty "last" page without an error; with the fingerprint it is told which
// field differs. The fingerprint is not a secret: a client can forge a
// token, so a cursor only positions a listing in its own order (the tenant
// comes from the credential) and nothing a response states is taken from
// it (a rank is counted, not read back).
//
// Layout, base64url without padding: the version byte, 4 bytes of the
// request type's hash, the number of set fields and for each its number
// and 6 bytes of its value's hash, then the cursor as JSON.

const (
	pageTokenVersion = 1
	typeSumLen       = 4
	fieldSumLen      = 6
)

// fieldSum is the fingerprint of one set field of a request.
type fieldSum struct {
	num protowire.Number
	sum [fieldSumLen]byte
}

// isPaging tells the fields that move through a listing rather than choose it.
func isPaging(fd protoreflect.FieldDescriptor) bool {
	return fd.Name() == "page_token" || fd.Name() == "page_size"
}

// queryPrint is the fingerprint of req's query: its type and its set fields
// in field number order. Unset fields are left out, so a field added to
// the request later does not void the tokens of requests without it.
func queryPrint(req proto.Message) (typeSum [typeSumLen]byte, fields []fieldSum) {
	m := req.ProtoReflect()
	name := sha256.Sum256([]byte(m.Descriptor().FullName()))
	copy(typeSum[:], name[:])
	fds := m.Descriptor().Fields()
	for i := range fds.Len() {
		fd := fds.Get(i)
		if isPaging(fd) || !m.Has(fd) {
			continue
		}
		// The field alone, marshalled deterministically (map order).
		one := m.Type().New()
		one.Set(fd, m.Get(fd))
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(one.Interface())
		if err != nil {
			// Only invalid UTF-8 in a string fails, which the gRPC
			// codec refused before the handler; hash what there is.
			b = fmt.Appendf(nil, "%v", m.Get(fd))
		}
		h := sha256.Sum256(b)
		f := fieldSum{num: fd.Number()}
		copy(f.sum[:], h[:])
		fields = append(fields, f)
	}
	return typeSum, fields
}

// NextPageToken seals cursor, the position after a page's last row, as the
// next_page_token of req's listing. cursor must encode as JSON (a struct
// of strings, integers and times; a float as its bits, as JSON has no NaN).
func NextPageToken(req proto.Message, cursor any) (string, error) {
	c, err := json.Marshal(cursor)
	if err != nil {
		return "", fmt.Errorf("encode the page cursor of %s: %w", req.ProtoReflect().Descriptor().FullName(), err)
	}
	typeSum, fields := queryPrint(req)
	b := append([]byte{pageTokenVersion}, typeSum[:]...)
	b = protowire.AppendVarint(b, uint64(len(fields)))
	for _, f := range fields {
		b = protowire.AppendVarint(b, uint64(f.num))
		b = append(b, f.sum[:]...)
	}
	return base64.RawURLEncoding.EncodeToString(append(b, c...)), nil
}

// PageCursor reads the page_token of req into cursor (a pointer to the
// type NextPageToken was given). It returns false when req has no token:
// the first page. A token that is not one this API returned, or that was
// returned for a request of another type or with other fields than req's
// (page_size aside), is a violation of page_token that says which.
func PageCursor(req proto.Message, cursor any) (bool, *FieldViolation) {
	m := req.ProtoReflect()
	fd := m.Descriptor().Fields().ByName("page_token")
	if fd == nil || fd.Kind() != protoreflect.StringKind {
		panic(fmt.Sprintf("%s has no string page_token", m.Descriptor().FullName()))
	}
	tok := m.Get(fd).String()
	if tok == "" {
		return false, nil
	}
	typeSum, fields, c, err := splitPageToken(tok)
	if err == nil {
		err = decodeCursor(c, cursor)
	}
	if err != nil {
		v := MalformedPageToken(err.Error())
		return false, &v
	}
	wantType, want := queryPrint(req)
	if typeSum != wantType {
		return false, &FieldViolation{Field: "page_token", Description: fmt.Sprintf("is not a next_page_token of %s: it was returned by another method", m.Descriptor().Name())}
	}
	if differ := differingFields(m.Descriptor(), fields, want); len(differ) > 0 {
		return false, &FieldViolation{Field: "page_token", Description: fmt.Sprintf(
			"was returned for another %s: page with the request that returned it, changing only page_token (and page_size if need be)",
			strings.Join(differ, ", "))}
	}
	return true, nil
}

// MalformedPageToken is the violation of a page token that is not one
// this API returned; why says what gave it away. A handler whose cursor
// decodes but names nothing it could continue after says so with it too.
func MalformedPageToken(why string) FieldViolation {
	return FieldViolation{Field: "page_token", Description: "is malformed: not a next_page_token of this API (" + why + ")"}
}

// splitPageToken checks a token's frame and returns its parts.
func splitPageToken(tok string) (typeSum [typeSumLen]byte, fields []fieldSum, cursor []byte, err error) {
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		return typeSum, nil, nil, errors.New("not base64url")
	}
	if len(b) == 0 {
		return typeSum, nil, nil, errors.New("empty")
	}
	if b[0] != pageTokenVersion {
		// Garbage mostly, or a token of a later server's format.
		return typeSum, nil, nil, errors.New("unknown version")
	}
	b = b[1:]
	if len(b) < typeSumLen {
		return typeSum, nil, nil, errors.New("truncated")
	}
	copy(typeSum[:], b)
	b = b[typeSumLen:]
	n, l := protowire.ConsumeVarint(b)
	// A request has fewer than a thousand fields; the bound keeps a forged
	// count from asking for memory.
	if l < 0 || n > 1000 {
		return typeSum, nil, nil, errors.New("bad field count")
	}
	b = b[l:]
	prev := protowire.Number(0)
	for range n {
		num, l := protowire.ConsumeVarint(b)
		if l < 0 || num <= uint64(prev) || num > uint64(protowire.MaxValidNumber) || len(b) < l+fieldSumLen {
			return typeSum, nil, nil, errors.New("bad field fingerprint")
		}
		f := fieldSum{num: protowire.Number(num)}
		copy(f.sum[:], b[l:])
		fields, prev, b = append(fields, f), f.num, b[l+fieldSumLen:]
	}
	return typeSum, fields, b, nil
}

// decodeCursor reads a cursor strictly: one JSON value of the cursor's
// type with no other fields and nothing after it.
func decodeCursor(b []byte, cursor any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(cursor); err != nil {
		return errors.New("bad position")
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("trailing data")
	}
	// Postgres text holds no NUL: a cursor with one would fail the query
	// as an internal error rather than the token. Only a decoded string
	// tells: a shop's id may hold the text \u0000, escaped in the JSON.
	for toks := json.NewDecoder(bytes.NewReader(b)); ; {
		t, err := toks.Token()
		if err != nil {
			return nil
		}
		if s, ok := t.(string); ok && strings.IndexByte(s, 0) >= 0 {
			return errors.New("bad position")
		}
	}
}

// differingFields names the fields set differently in a token's request
// and in this one, in field number order.
func differingFields(md protoreflect.MessageDescriptor, got, want []fieldSum) []string {
	sums := map[protowire.Number][fieldSumLen]byte{}
	for _, f := range got {
		sums[f.num] = f.sum
	}
	var nums []protowire.Number
	for _, f := range want {
		if s, ok := sums[f.num]; !ok || s != f.sum {
			nums = append(nums, f.num)
		}
		delete(sums, f.num)
	}
	for num := range sums {
		nums = append(nums, num)
	}
	slices.Sort(nums)
	names := make([]string, len(nums))
	for i, num := range nums {
		names[i] = fmt.Sprintf("field %d", num)
		if fd := md.Fields().ByNumber(num); fd != nil {
			names[i] = string(fd.Name())
		}
	}
	return names
}
