package metrics_test

import (
	"context"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/retainhq/retain/platform/server"
	eventsv1 "github.com/retainhq/retain/proto/gen/go/retain/events/v1"
	metricsv1 "github.com/retainhq/retain/proto/gen/go/retain/metrics/v1"
)

// TestPageTokensContinueOnlyTheirQuery: an RFM or top customers token pages
// the listing it came from. Garbage, a token of other request fields, or a
// token edited to state a rank is refused naming page_token; ranks are
// counted, and the pages of an RFM "as of now" are one instant.
func TestPageTokensContinueOnlyTheirQuery(t *testing.T) {
	s := setup(t)
	s.publish(t, "shop", []*eventsv1.Event{
		orderEvent("o1", "o1", "c1", day("2025-02-01"), 9000, "EUR"),
		orderEvent("o2", "o2", "c2", day("2025-02-02"), 5000, "EUR"),
		orderEvent("o3", "o3", "c3", day("2025-02-03"), 3000, "EUR"),
		orderEvent("o4", "o4", "c4", day("2025-02-04"), 1000, "EUR"),
	})
	s.caughtUp(t)
	ctx := context.Background()
	c := s.client(t, "shop")
	refused := func(t *testing.T, err error, says string) {
		t.Helper()
		wantCode(t, err, codes.InvalidArgument)
		for _, v := range server.Violations(err) {
			if v.Field == "page_token" && strings.Contains(v.Description, says) {
				return
			}
		}
		t.Fatalf("%v: want a page_token violation saying %q", err, says)
	}

	t.Run("rfm", func(t *testing.T) {
		_, err := c.GetRFM(ctx, &metricsv1.GetRFMRequest{PageToken: "garbage"}, c.creds)
		refused(t, err, "is malformed")
		first, err := c.GetRFM(ctx, &metricsv1.GetRFMRequest{PageSize: 1}, c.creds)
		if err != nil || first.GetNextPageToken() == "" {
			t.Fatalf("first page = %v, %v", first, err)
		}
		_, err = c.GetRFM(ctx, &metricsv1.GetRFMRequest{Currency: "EUR", PageToken: first.GetNextPageToken()}, c.creds)
		refused(t, err, "was returned for another currency")
		time.Sleep(5 * time.Millisecond) // now moves on
		next, err := c.GetRFM(ctx, &metricsv1.GetRFMRequest{PageSize: 1, PageToken: first.GetNextPageToken()}, c.creds)
		if err != nil || len(next.GetScores()) != 1 || next.GetScores()[0].GetCustomerId() != "c2" {
			t.Fatalf("second page = %v, %v", next, err)
		}
		if !next.GetAt().AsTime().Equal(first.GetAt().AsTime()) {
			t.Fatalf("second page scored as of %v, the first as of %v", next.GetAt().AsTime(), first.GetAt().AsTime())
		}
	})

	t.Run("top customers", func(t *testing.T) {
		period := pbPeriod(mustPeriod(day("2025-01-01"), day("2025-07-01")))
		first, err := c.GetTopCustomers(ctx, &metricsv1.GetTopCustomersRequest{Period: period, Percent: 100, PageSize: 2}, c.creds)
		if err != nil || first.GetNextPageToken() == "" {
			t.Fatalf("first page = %v, %v", first, err)
		}
		_, err = c.GetTopCustomers(ctx, &metricsv1.GetTopCustomersRequest{Period: period, Percent: 50, PageToken: first.GetNextPageToken()}, c.creds)
		refused(t, err, "was returned for another percent")
		other := pbPeriod(mustPeriod(day("2025-02-01"), day("2025-07-01")))
		_, err = c.GetTopCustomers(ctx, &metricsv1.GetTopCustomersRequest{Period: other, Percent: 100, PageToken: first.GetNextPageToken()}, c.creds)
		refused(t, err, "was returned for another period")
		// A token edited to carry a rank, as the old tokens did.
		raw, _ := base64.RawURLEncoding.DecodeString(first.GetNextPageToken())
		forged := base64.RawURLEncoding.EncodeToString([]byte(strings.Replace(string(raw), `{"n":`, `{"r":500,"n":`, 1)))
		_, err = c.GetTopCustomers(ctx, &metricsv1.GetTopCustomersRequest{Period: period, Percent: 100, PageToken: forged}, c.creds)
		refused(t, err, "is malformed")
		_, err = c.GetTopCustomers(ctx, &metricsv1.GetTopCustomersRequest{Period: period, Percent: 100, PageToken: "r:500"}, c.creds)
		refused(t, err, "is malformed")

		next, err := c.GetTopCustomers(ctx, &metricsv1.GetTopCustomersRequest{Period: period, Percent: 100, PageSize: 2, PageToken: first.GetNextPageToken()}, c.creds)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, r := range append(first.GetTop(), next.GetTop()...) {
			got = append(got, r.GetCustomerId()+"#"+string(rune('0'+r.GetRank())))
		}
		if strings.Join(got, " ") != "c1#1 c2#2 c3#3 c4#4" || next.GetNextPageToken() != "" {
			t.Fatalf("ranking over two pages: %v (next %q)", got, next.GetNextPageToken())
		}
	})
}
