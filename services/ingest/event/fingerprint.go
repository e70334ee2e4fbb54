package event

import (
	"crypto/sha256"
	"encoding/base64"
	"fmt"

	"google.golang.org/protobuf/proto"

	eventsv1 "github.com/retainhq/retain/proto/gen/go/retain/events/v1"
)

// HeaderFingerprint carries an event's content fingerprint on the stream,
// so that the ingest log and a duplicate's check can read it without
// decoding the event.
const HeaderFingerprint = "Retain-Event-Fingerprint"

// deterministic orders map entries (customer traits): the same event must
// always give the same bytes, hence the same fingerprint.
var deterministic = proto.MarshalOptions{Deterministic: true}

// Encode returns the wire form of a normalized event and its content
// fingerprint: SHA-256, unpadded base64url, of the event's deterministic
// protobuf encoding without the fields ingest stamps (tenant_id, which the
// credential decides and the message id already carries, and received_at).
// Two sends of one event, with the same id, give the same fingerprint
// however far apart; any difference in what the client said about the event
// (a field, its payload, occurred_at, source) gives another.
//
// The wire form is that encoding followed by the stamped fields: protobuf
// merges concatenated encodings, so the event is marshalled once.
func Encode(ev *eventsv1.Event) (data []byte, fingerprint string, err error) {
	tenant, received := ev.TenantId, ev.ReceivedAt
	ev.TenantId, ev.ReceivedAt = "", nil
	data, err = deterministic.Marshal(ev)
	ev.TenantId, ev.ReceivedAt = tenant, received
	if err != nil {
		return nil, "", err
	}
	fingerprint = sum(data)
	if tenant != "" || received != nil {
		data, err = proto.MarshalOptions{}.MarshalAppend(data, &eventsv1.Event{TenantId: tenant, ReceivedAt: received})
		if err != nil {
			return nil, "", err
		}
	}
	return data, fingerprint, nil
}

// StoredFingerprint is the fingerprint of a message on the stream: its
// HeaderFingerprint header (given as header), or for one published before
// fingerprints were (a rolling upgrade) the fingerprint of its stored event;
// "" (unknown) if that does not decode.
func StoredFingerprint(header string, data []byte) string {
	if header != "" {
		return header
	}
	fp, _ := FingerprintOf(data)
	return fp
}

// FingerprintOf returns the fingerprint of an event as stored on the stream:
// the one Encode gave it, also for events stored before fingerprints were
// (their encoding included the stamps, in another order).
func FingerprintOf(data []byte) (string, error) {
	ev := &eventsv1.Event{}
	if err := proto.Unmarshal(data, ev); err != nil {
		return "", fmt.Errorf("decode stored event: %w", err)
	}
	ev.TenantId, ev.ReceivedAt = "", nil
	body, err := deterministic.Marshal(ev)
	if err != nil {
		return "", fmt.Errorf("encode stored event: %w", err)
	}
	return sum(body), nil
}

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return base64.RawURLEncoding.EncodeToString(h[:])
}
