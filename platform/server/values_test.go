package server

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	eventsv1 "github.com/retainhq/retain/proto/gen/go/retain/events/v1"
	ingestv1 "github.com/retainhq/retain/proto/gen/go/retain/ingest/v1"
	notifierv1 "github.com/retainhq/retain/proto/gen/go/retain/notifier/v1"
)

// notifierStub counts the calls that reach it.
type notifierStub struct {
	notifierv1.UnimplementedNotifierServiceServer
	calls atomic.Int32
}

func (n *notifierStub) SendTest(context.Context, *notifierv1.SendTestRequest) (*notifierv1.SendTestResponse, error) {
	n.calls.Add(1)
	return &notifierv1.SendTestResponse{}, nil
}

func (n *notifierStub) SetPreferences(context.Context, *notifierv1.SetPreferencesRequest) (*notifierv1.SetPreferencesResponse, error) {
	n.calls.Add(1)
	return &notifierv1.SetPreferencesResponse{}, nil
}

type valuesBundle struct {
	notifier *notifierStub
	ingest   *ingestCounter
	conn     *grpc.ClientConn
	creds    grpc.CallOption
}

// setupValues serves a notifier stub and an ingest stub whose
// PublishRequest.event is left to the handler, on a real listener.
func setupValues(t *testing.T) valuesBundle {
	t.Helper()
	b := valuesBundle{notifier: &notifierStub{}, ingest: &ingestCounter{}}
	b.conn, b.creds = serveStubs(t, []string{notifierv1.NotifierService_SendTest_FullMethodName, notifierv1.NotifierService_SetPreferences_FullMethodName}, func(s *grpc.Server) {
		notifierv1.RegisterNotifierServiceServer(s, b.notifier)
	}, b.ingest)
	return b
}

func text(s string) *notifierv1.TemplateValue {
	return &notifierv1.TemplateValue{Value: &notifierv1.TemplateValue_Text{Text: s}}
}

// TestBadRequestValuesAreRefused: a NUL in any string of a request, or an
// enum number the schema lacks, is INVALID_ARGUMENT naming each, and never
// reaches the handler (whose database cannot store a NUL, and whose checks
// took an unknown enum value for unset).
func TestBadRequestValuesAreRefused(t *testing.T) {
	b := setupValues(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	notifier := notifierv1.NewNotifierServiceClient(b.conn)

	type violation = FieldViolation
	nul := func(field string, at int) violation {
		return violation{field, fmt.Sprintf("holds a NUL byte (\\x00) at byte %d, which text must not contain", at)}
	}
	many := &notifierv1.SendTestRequest{CustomerId: "c", Variables: map[string]*notifierv1.TemplateValue{}}
	for i := range 12 {
		many.Variables[fmt.Sprintf("v%02d", i)] = text("\x00")
	}
	for _, tc := range []struct {
		name string
		call func() error
		want []violation
	}{
		{"a NUL in a field", func() error {
			_, err := notifier.SendTest(ctx, &notifierv1.SendTestRequest{CustomerId: "c-\x00x", Channel: notifierv1.Channel_CHANNEL_EMAIL}, b.creds)
			return err
		}, []violation{nul("customer_id", 2)}},
		{"in a map's keys and values, in key order", func() error {
			_, err := notifier.SendTest(ctx, &notifierv1.SendTestRequest{CustomerId: "c", Variables: map[string]*notifierv1.TemplateValue{
				"b": text("x\x00"), "a\x00": text("ok"),
				"c": {Value: &notifierv1.TemplateValue_Coupon{Coupon: &notifierv1.Coupon{Code: "\x00"}}},
			}}, b.creds)
			return err
		}, []violation{
			{`variables["a\x00"]`, "the key holds a NUL byte (\\x00) at byte 1, which text must not contain"},
			nul(`variables["b"].text`, 1), nul(`variables["c"].coupon.code`, 0),
		}},
		{"an enum number the schema lacks, in a list", func() error {
			_, err := notifier.SetPreferences(ctx, &notifierv1.SetPreferencesRequest{CustomerId: "c", Preferences: []*notifierv1.ChannelPreference{
				{Channel: notifierv1.Channel_CHANNEL_EMAIL, Category: notifierv1.Category_CATEGORY_MARKETING},
				{Channel: 99, Category: notifierv1.Category_CATEGORY_MARKETING, Source: "a\x00"},
			}}, b.creds)
			return err
		}, []violation{
			{"preferences[1].channel", "unknown value 99; valid: CHANNEL_EMAIL, CHANNEL_SMS, CHANNEL_WEBHOOK"},
			nul("preferences[1].source", 1),
		}},
		{"at most ten named", func() error {
			_, err := notifier.SendTest(ctx, many, b.creds)
			return err
		}, []violation{
			nul(`variables["v00"].text`, 0), nul(`variables["v01"].text`, 0), nul(`variables["v02"].text`, 0), nul(`variables["v03"].text`, 0),
			nul(`variables["v04"].text`, 0), nul(`variables["v05"].text`, 0), nul(`variables["v06"].text`, 0), nul(`variables["v07"].text`, 0),
			nul(`variables["v08"].text`, 0), nul(`variables["v09"].text`, 0),
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if status.Code(err) != codes.InvalidArgument {
				t.Fatalf("%v, want InvalidArgument", err)
			}
			if got := Violations(err); fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("violations\n%v\nwant\n%v", got, tc.want)
			}
			if UnknownRequestFields(err) {
				t.Error("taken for unknown fields")
			}
		})
	}
	if n := b.notifier.calls.Load(); n != 0 {
		t.Errorf("the handler was called %d times", n)
	}

	t.Run("other control characters and unset enums reach the handler", func(t *testing.T) {
		_, err := notifier.SendTest(ctx, &notifierv1.SendTestRequest{CustomerId: "c", Variables: map[string]*notifierv1.TemplateValue{
			"body": text("line\r\n\tnext\x01\x7f")}}, b.creds)
		if err != nil || b.notifier.calls.Load() != 1 {
			t.Errorf("%v (%d calls)", err, b.notifier.calls.Load())
		}
	})

	t.Run("fields the handler checks itself are left to it", func(t *testing.T) {
		ev := &eventsv1.Event{Id: "e\x00", Payload: &eventsv1.Event_TicketOpened{TicketOpened: &eventsv1.TicketOpened{Category: 42}}}
		_, err := ingestv1.NewIngestServiceClient(b.conn).Publish(ctx, &ingestv1.PublishRequest{Event: ev}, b.creds)
		if err != nil || b.ingest.calls.Load() != 1 {
			t.Errorf("%v (%d calls)", err, b.ingest.calls.Load())
		}
	})

	t.Run("in a stream", func(t *testing.T) {
		s, err := b.conn.NewStream(ctx, &collectDesc.Streams[0], "/retain.test.v1.Collector/Collect", b.creds)
		if err != nil {
			t.Fatal(err)
		}
		_ = s.SendMsg(&eventsv1.Money{Currency: "EUR"})
		_ = s.SendMsg(&eventsv1.Money{Currency: "E\x00R"})
		_ = s.CloseSend()
		err = s.RecvMsg(&eventsv1.Money{})
		if vs := Violations(err); status.Code(err) != codes.InvalidArgument || len(vs) != 1 || vs[0].Field != "currency" {
			t.Errorf("%v, want currency refused", err)
		}
	})
}

// BenchmarkCleanRequestValues is the check of a request with nothing to
// refuse, which every call pays.
func BenchmarkCleanRequestValues(b *testing.B) {
	req := &notifierv1.SendTestRequest{CustomerId: "c-1", TemplateKey: "winback", Channel: notifierv1.Channel_CHANNEL_EMAIL,
		Variables: map[string]*notifierv1.TemplateValue{"a": text(strings.Repeat("x", 100)), "b": text("y")}}
	b.ReportAllocs()
	for b.Loop() {
		if err := refuseBadValues(req, nil); err != nil {
			b.Fatal(err)
		}
	}
}
