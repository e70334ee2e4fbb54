package campaign_test

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/retainhq/retain/platform/server"
	campaignv1 "github.com/retainhq/retain/proto/gen/go/retain/campaign/v1"
	eventsv1 "github.com/retainhq/retain/proto/gen/go/retain/events/v1"
	metricsv1 "github.com/retainhq/retain/proto/gen/go/retain/metrics/v1"
	"github.com/retainhq/retain/services/campaign"
	"github.com/retainhq/retain/services/campaign/campaignfile"
	"github.com/retainhq/retain/services/metrics/rfm"
)

// referenceSegments is each customer's RFM segment as of at, computed in
// plain Go from the test's own order events with the shared rules, the way
// the metrics service scores them: every customer with an order strictly
// before at, quintiles of the last order's instant and of the order count.
func referenceSegments(orders []*eventsv1.Event, at time.Time) map[string]rfm.Segment {
	type value struct {
		last time.Time
		n    int64
	}
	seen := map[string]bool{}
	byCustomer := map[string]*value{}
	for _, ev := range orders {
		o := ev.GetOrderPlaced()
		when := ev.GetOccurredAt().AsTime()
		if seen[o.GetOrderId()] || !when.Before(at) {
			continue
		}
		seen[o.GetOrderId()] = true
		v := byCustomer[o.GetCustomerId()]
		if v == nil {
			v = &value{}
			byCustomer[o.GetCustomerId()] = v
		}
		v.n++
		if when.After(v.last) {
			v.last = when
		}
	}
	ids := slices.Sorted(maps.Keys(byCustomer))
	rec, freq := make([]int64, len(ids)), make([]int64, len(ids))
	for i, id := range ids {
		rec[i], freq[i] = byCustomer[id].last.UnixNano(), byCustomer[id].n
	}
	rs, fs := rfm.Quintiles(rec), rfm.Quintiles(freq)
	out := make(map[string]rfm.Segment, len(ids))
	for i, id := range ids {
		out[id] = rfm.SegmentOf(rs[i], fs[i])
	}
	return out
}

func inSegments(ref map[string]rfm.Segment, segs ...rfm.Segment) []string {
	var ids []string
	for id, s := range ref {
		if slices.Contains(segs, s) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// TestRFMSegmentAudience: a scheduled rfm_segment campaign enrolls exactly
// the customers the shared RFM rules put in its segments, the preview
// shows the same customers, and an event-triggered one scores the customer
// as of the event's processing.
func TestRFMSegmentAudience(t *testing.T) {
	s := setup(t, func(c *campaign.Config) { c.Workers = 2; c.BatchSize = 5 })
	const tenant = "shop"
	ctx := context.Background()
	tok := s.token(t, tenant)
	now := s.clock.Now()

	// 40 customers with 1-6 orders, last ones 1-300 days ago (with ties).
	rng := rand.New(rand.NewPCG(7, 7))
	var orders []*eventsv1.Event
	for c := range 40 {
		cust := fmt.Sprintf("c-%02d", c)
		last := now.Add(-time.Duration(1+rng.IntN(300)) * day)
		for o := range 1 + rng.IntN(6) {
			orders = append(orders, orderEv(fmt.Sprintf("%s-o%d", cust, o), cust, last.Add(-time.Duration(o)*10*day), int64(500+100*rng.IntN(50))))
		}
	}
	// Not scored: an order at the evaluation instant, and a customer the
	// service knows from a profile only.
	orders = append(orders, orderEv("future-o0", "future", now, 1000))
	s.publish(t, tenant, append(slices.Clone(orders), profileEv("p1", "profile-only", now.Add(-day), "", nil))...)
	s.caughtUp(t)
	// An order in a later batch, and an order sent again under another
	// event id: it counts once.
	lateOrder := orderEv("late-o0", "late", now.Add(-50*day), 1000)
	resent := orderEv("c-00-o0", "c-00", orders[0].GetOccurredAt().AsTime(), orders[0].GetOrderPlaced().GetTotal().GetAmountMinor())
	resent.Id = "c-00-o0-resent"
	orders = append(orders, lateOrder, resent)
	s.publish(t, tenant, lateOrder, resent)
	s.caughtUp(t)

	ref := referenceSegments(orders, now)
	champions := inSegments(ref, rfm.SegmentChampions)
	if len(champions) == 0 || len(champions) == len(ref) {
		t.Fatalf("the test's data has %d champions of %d customers: pick other data", len(champions), len(ref))
	}
	if _, ok := ref["future"]; ok {
		t.Fatal("the reference scored an order at the instant")
	}

	file := `
id: rfm-champions
name: Thank the champions
trigger: {schedule: {every: 1d}}
conditions:
  - rfm_segment: {segments: [RFM_SEGMENT_CHAMPIONS]}
steps:
  - {id: thanks, send: {channel: CHANNEL_EMAIL, template_key: vip_care}}
`
	t.Run("the preview shows the reference's segments", func(t *testing.T) {
		c, err := campaignfile.Decode([]byte(file))
		if err != nil {
			t.Fatal(err)
		}
		pv, err := s.client().PreviewAudience(ctx, &campaignv1.PreviewAudienceRequest{Campaign: c, Limit: 1000}, tok)
		if err != nil {
			t.Fatal(err)
		}
		if got := pv.GetCustomerIds(); pv.GetCount() != int64(len(champions)) || !slices.Equal(got, champions) {
			t.Fatalf("preview %d %v, want the reference's champions %v", pv.GetCount(), got, champions)
		}
		c.Conditions[0].GetRfmSegment().Segments = []metricsv1.RFMSegment{metricsv1.RFMSegment(rfm.SegmentLost), metricsv1.RFMSegment(rfm.SegmentLoyal)}
		pv, err = s.client().PreviewAudience(ctx, &campaignv1.PreviewAudienceRequest{Campaign: c, Limit: 1000}, tok)
		want := inSegments(ref, rfm.SegmentLost, rfm.SegmentLoyal)
		if err != nil || !slices.Equal(pv.GetCustomerIds(), want) || len(want) == 0 {
			t.Fatalf("preview of lost and loyal %v %v, want %v", pv.GetCustomerIds(), err, want)
		}
	})

	t.Run("the scheduled audience enrolls exactly the reference's champions", func(t *testing.T) {
		s.create(t, tenant, file)
		s.audiences(t)
		var got []string
		for _, n := range s.notifications(t, tenant) {
			got = append(got, n.GetCustomerId())
		}
		slices.Sort(got)
		if !slices.Equal(got, champions) {
			t.Fatalf("sent to %v, want the reference's champions %v", got, champions)
		}
		if n := s.count(t, `SELECT count(*) FROM enrollments WHERE campaign_id = 'rfm-champions'`); n != len(champions) {
			t.Fatalf("%d enrollments, want %d", n, len(champions))
		}
	})

	t.Run("an event trigger scores the customer with the new order", func(t *testing.T) {
		s.create(t, tenant, `
id: champion-order
name: A champion ordered
trigger: {event: order.placed}
entry: {once_per_key: order_id}
conditions:
  - rfm_segment: {segments: [RFM_SEGMENT_CHAMPIONS]}
steps:
  - {id: hello, send: {channel: CHANNEL_EMAIL, template_key: thank_you_feedback}}
`)
		// A champion and the customer with the oldest single order order
		// again, a minute ago: both are recent now, only the first frequent.
		lost := inSegments(ref, rfm.SegmentLost)
		if len(lost) == 0 {
			t.Fatal("no lost customer in the test's data")
		}
		evs := []*eventsv1.Event{
			orderEv("again-1", champions[0], now.Add(-time.Minute), 1000),
			orderEv("again-2", lost[0], now.Add(-time.Minute), 1000),
		}
		orders = append(orders, evs...)
		after := referenceSegments(orders, now)
		want := inSegments(map[string]rfm.Segment{champions[0]: after[champions[0]], lost[0]: after[lost[0]]}, rfm.SegmentChampions)
		if !slices.Equal(want, []string{champions[0]}) {
			t.Fatalf("the reference now has %s %s and %s %s: pick other data", champions[0], after[champions[0]], lost[0], after[lost[0]])
		}
		s.publish(t, tenant, evs...)
		s.caughtUp(t)
		var got []string
		for _, n := range s.notifications(t, tenant) {
			if n.GetOrigin().GetCampaignId() == "champion-order" {
				got = append(got, n.GetCustomerId())
			}
		}
		if !slices.Equal(got, want) {
			t.Fatalf("sent to %v, want %v", got, want)
		}
	})

	t.Run("event triggers reuse the tenant's scales for five minutes", func(t *testing.T) {
		// The previous subtest's batch computed the scales at now. A
		// customer whose first order comes after that is not scored
		// against them (metrics at that instant would not know them
		// either); once the scales are five minutes old they are read
		// again and the next new customer scores R 5, F 1: new.
		s.create(t, tenant, `
id: rfm-new
name: Welcome the new
trigger: {event: order.placed}
entry: {once_per_key: order_id}
conditions:
  - rfm_segment: {segments: [RFM_SEGMENT_NEW]}
steps:
  - {id: hello, send: {channel: CHANNEL_EMAIL, template_key: thank_you_feedback}}
`)
		s.clock.Advance(time.Minute)
		s.publish(t, tenant, orderEv("n1-o0", "n1", s.clock.Now().Add(-30*time.Second), 1000))
		s.caughtUp(t)
		s.clock.Advance(5 * time.Minute)
		s.publish(t, tenant, orderEv("n2-o0", "n2", s.clock.Now().Add(-30*time.Second), 1000))
		s.caughtUp(t)
		var got []string
		for _, n := range s.notifications(t, tenant) {
			if n.GetOrigin().GetCampaignId() == "rfm-new" {
				got = append(got, n.GetCustomerId())
			}
		}
		if !slices.Equal(got, []string{"n2"}) {
			t.Fatalf("welcomed %v, want only n2 (n1 ordered after the cached scales' instant)", got)
		}
	})

	t.Run("a bad segment is rejected naming the field", func(t *testing.T) {
		c, err := campaignfile.Decode([]byte(strings.Replace(file, "[RFM_SEGMENT_CHAMPIONS]", "[RFM_SEGMENT_CHAMPIONS, RFM_SEGMENT_UNSPECIFIED]", 1)))
		if err != nil {
			t.Fatal(err)
		}
		c.Id = "bad-rfm"
		_, err = s.client().CreateCampaign(ctx, &campaignv1.CreateCampaignRequest{Campaign: c}, tok)
		var fields []string
		for _, v := range server.Violations(err) {
			fields = append(fields, v.Field)
		}
		if status.Code(err) != codes.InvalidArgument || !slices.Equal(fields, []string{"campaign.conditions[0].rfm_segment.segments[1]"}) {
			t.Fatalf("create with an unspecified segment: %v, fields %v", err, fields)
		}
	})
}
