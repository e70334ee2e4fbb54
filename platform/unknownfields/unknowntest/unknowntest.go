// Package unknowntest builds messages holding fields their schema lacks,
// for tests of what refuses them (package unknownfields and its users).
package unknowntest

import (
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// With is m as a client built on a newer or forked .proto sends it: its
// encoding with a varint field of each number appended, decoded again,
// which keeps them as unknown fields that marshalling sends on.
func With[M proto.Message](t testing.TB, m M, nums ...protowire.Number) M {
	t.Helper()
	data, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	for _, num := range nums {
		data = protowire.AppendTag(data, num, protowire.VarintType)
		data = protowire.AppendVarint(data, 7)
	}
	out := m.ProtoReflect().New().Interface().(M)
	if err := proto.Unmarshal(data, out); err != nil {
		t.Fatal(err)
	}
	return out
}
