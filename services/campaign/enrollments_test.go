package campaign_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/retainhq/retain/platform/server"
	campaignv1 "github.com/retainhq/retain/proto/gen/go/retain/campaign/v1"
	eventsv1 "github.com/retainhq/retain/proto/gen/go/retain/events/v1"
	"github.com/retainhq/retain/services/campaign/internal/domain"
)

// listAll pages through a customer's enrollments with page size n and
// returns their ids in order, calling between after each page.
func listAll(t *testing.T, c campaignv1.CampaignServiceClient, tok grpc.CallOption, req *campaignv1.ListCustomerEnrollmentsRequest,
	between func(page int)) (ids []string, pages []int) {
	t.Helper()
	req.PageToken = ""
	for page := 0; ; page++ {
		resp, err := c.ListCustomerEnrollments(context.Background(), req, tok)
		if err != nil {
			t.Fatalf("page %d: %v", page, err)
		}
		for _, e := range resp.GetEnrollments() {
			ids = append(ids, e.GetId())
		}
		pages = append(pages, len(resp.GetEnrollments()))
		if resp.GetNextPageToken() == "" {
			return ids, pages
		}
		if page > 100 {
			t.Fatalf("more than 100 pages")
		}
		req.PageToken = resp.GetNextPageToken()
		if between != nil {
			between(page)
		}
	}
}

// rowIDs maps the ids a tenant's enrollments are shown by (the hash of
// their key) to their rows' sequence numbers.
func rowIDs(t *testing.T, s *stack, tenant string) map[string]int64 {
	t.Helper()
	rows, err := s.db.Query(context.Background(), `SELECT id, campaign_id, customer_id, entry_key FROM enrollments WHERE tenant = $1`, tenant)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var id int64
		var camp, cust, key string
		if err := rows.Scan(&id, &camp, &cust, &key); err != nil {
			t.Fatal(err)
		}
		out[domain.EnrollmentRef(tenant, camp, cust, key)] = id
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestCustomerEnrollmentsPage: a customer with more enrollments than one
// page (a guest checkout account under a per-order campaign) is listed
// whole, newest first, the once-per-customer enrollment of their first
// order on the last page; none is skipped or repeated while others are
// added between pages; bad page sizes and tokens are refused naming the
// field.
func TestCustomerEnrollmentsPage(t *testing.T) {
	s := setup(t)
	const tenant = "shop"
	ctx := context.Background()
	tok := s.token(t, tenant)
	s.create(t, tenant, sendNow("welcome", "{once_per_customer: {}}", 0))
	s.create(t, tenant, waitThenSend) // "later", once per order
	s.publish(t, tenant, orderEv("first", "guest", s.clock.Now(), 1000), orderEv("x", "other", s.clock.Now(), 1000))
	s.caughtUp(t)
	s.clock.Advance(time.Minute)
	// 1004 orders enrolled at one instant: the order within it is the id's.
	var evs []*eventsv1.Event
	for i := range 1004 {
		evs = append(evs, orderEv(fmt.Sprintf("o-%d", i), "guest", s.clock.Now(), 1000))
	}
	s.publish(t, tenant, evs...)
	s.caughtUp(t)
	const total = 1 + 1 + 1004 // welcome, later for "first", later for each o-N
	if n := s.count(t, `SELECT count(*) FROM enrollments WHERE customer_id = 'guest'`); n != total {
		t.Fatalf("%d enrollments of guest, want %d", n, total)
	}

	t.Run("every page, newest first", func(t *testing.T) {
		var all []*campaignv1.Enrollment
		req := &campaignv1.ListCustomerEnrollmentsRequest{CustomerId: "guest"}
		var sizes []int
		for {
			resp, err := s.client().ListCustomerEnrollments(ctx, req, tok)
			if err != nil {
				t.Fatal(err)
			}
			all = append(all, resp.GetEnrollments()...)
			sizes = append(sizes, len(resp.GetEnrollments()))
			if req.PageToken = resp.GetNextPageToken(); req.PageToken == "" {
				break
			}
		}
		// The default page is 100: ten full pages, then the last 6.
		if want := []int{100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 6}; !slices.Equal(sizes, want) {
			t.Fatalf("page sizes %v, want %v", sizes, want)
		}
		seen := map[string]bool{}
		ids := rowIDs(t, s, tenant)
		for i, e := range all {
			if _, ok := ids[e.GetId()]; !ok {
				t.Fatalf("enrollment shown as %s, not by the hash of its key: %v", e.GetId(), e)
			}
			if seen[e.GetId()] {
				t.Fatalf("enrollment %s listed twice", e.GetId())
			}
			seen[e.GetId()] = true
			if e.GetCustomerId() != "guest" {
				t.Fatalf("another customer's enrollment: %v", e)
			}
			if i > 0 {
				prev := all[i-1]
				at, pat := e.GetEnteredAt().AsTime(), prev.GetEnteredAt().AsTime()
				if at.After(pat) || at.Equal(pat) && ids[e.GetId()] > ids[prev.GetId()] {
					t.Fatalf("not newest first at %d: %v after %v", i, e, prev)
				}
			}
		}
		last := all[len(all)-2:]
		var camps []string
		for _, e := range last {
			camps = append(camps, e.GetCampaignId()+"/"+e.GetEntryKey())
		}
		slices.Sort(camps)
		if want := []string{"later/order_id:first", "welcome/once"}; !slices.Equal(camps, want) {
			t.Fatalf("the first order's enrollments, last listed: %v, want %v", camps, want)
		}
	})

	t.Run("one campaign", func(t *testing.T) {
		resp, err := s.client().ListCustomerEnrollments(ctx, &campaignv1.ListCustomerEnrollmentsRequest{CustomerId: "guest", CampaignId: "welcome"}, tok)
		if err != nil || len(resp.GetEnrollments()) != 1 || resp.GetEnrollments()[0].GetCampaignId() != "welcome" || resp.GetNextPageToken() != "" {
			t.Fatalf("guest's welcome enrollments: %v (%v)", resp, err)
		}
		ids, pages := listAll(t, s.client(), tok, &campaignv1.ListCustomerEnrollmentsRequest{CustomerId: "guest", CampaignId: "later", PageSize: 1000}, nil)
		if len(ids) != total-1 || !slices.Equal(pages, []int{1000, 5}) {
			t.Fatalf("guest's later enrollments: %d in pages %v", len(ids), pages)
		}
	})

	t.Run("the last page exactly full", func(t *testing.T) {
		ids, pages := listAll(t, s.client(), tok, &campaignv1.ListCustomerEnrollmentsRequest{CustomerId: "guest", PageSize: total / 2}, nil)
		if len(ids) != total || !slices.Equal(pages, []int{total / 2, total / 2}) {
			t.Fatalf("%d enrollments in pages %v", len(ids), pages)
		}
	})

	t.Run("enrollments added between pages", func(t *testing.T) {
		before, _ := listAll(t, s.client(), tok, &campaignv1.ListCustomerEnrollmentsRequest{CustomerId: "guest", PageSize: 1000}, nil)
		// Between pages: newer enrollments (they sort before the position
		// reached), and some at the same instant as those being paged
		// through and earlier (the clock set back: they sort after it, on
		// a later page).
		now := s.clock.Now()
		added := 0
		got, _ := listAll(t, s.client(), tok, &campaignv1.ListCustomerEnrollmentsRequest{CustomerId: "guest", PageSize: 150}, func(page int) {
			for _, at := range []time.Time{now.Add(time.Hour), now, now.Add(-time.Hour)} {
				s.clock.Set(at)
				s.publish(t, tenant, orderEv(fmt.Sprintf("n-%d-%d", page, at.Unix()), "guest", at, 1000))
				added++
			}
			s.caughtUp(t)
		})
		s.clock.Set(now)
		seen := map[string]int{}
		for _, id := range got {
			seen[id]++
		}
		for id, n := range seen {
			if n > 1 {
				t.Errorf("enrollment %s listed %d times", id, n)
			}
		}
		for _, id := range before {
			if seen[id] == 0 {
				t.Errorf("enrollment %s, there before the first page, was skipped", id)
			}
		}
		if after := s.count(t, `SELECT count(*) FROM enrollments WHERE customer_id = 'guest'`); after != total+added {
			t.Fatalf("%d enrollments after adding %d", after, added)
		}
	})

	t.Run("bad page size and token", func(t *testing.T) {
		valid := func() string {
			resp, err := s.client().ListCustomerEnrollments(ctx, &campaignv1.ListCustomerEnrollmentsRequest{CustomerId: "guest", PageSize: 1}, tok)
			if err != nil || resp.GetNextPageToken() == "" {
				t.Fatalf("first page: %v (%v)", resp, err)
			}
			return resp.GetNextPageToken()
		}()
		b64 := base64.RawURLEncoding.EncodeToString
		// A token as the service seals one, around a position it would
		// not have written.
		crafted := func(campaign, key string) string {
			tok, err := server.NextPageToken(&campaignv1.ListCustomerEnrollmentsRequest{CustomerId: "guest"}, struct {
				At       time.Time `json:"t"`
				Campaign string    `json:"c"`
				Key      string    `json:"k"`
			}{s.clock.Now(), campaign, key})
			if err != nil {
				t.Fatal(err)
			}
			return tok
		}
		for _, tc := range []struct {
			name  string
			req   *campaignv1.ListCustomerEnrollmentsRequest
			field string
		}{
			{"negative size", &campaignv1.ListCustomerEnrollmentsRequest{CustomerId: "guest", PageSize: -1}, "page_size"},
			{"size over the maximum", &campaignv1.ListCustomerEnrollmentsRequest{CustomerId: "guest", PageSize: 1001}, "page_size"},
			{"token not base64", &campaignv1.ListCustomerEnrollmentsRequest{CustomerId: "guest", PageToken: "not a token!"}, "page_token"},
			{"token of the sequence number (before 0048)", &campaignv1.ListCustomerEnrollmentsRequest{CustomerId: "guest", PageToken: b64([]byte("1700000000000000.5"))}, "page_token"},
			{"token naming no enrollment", &campaignv1.ListCustomerEnrollmentsRequest{CustomerId: "guest", PageToken: crafted("Welcome!", "once")}, "page_token"},
			{"token without an entry key", &campaignv1.ListCustomerEnrollmentsRequest{CustomerId: "guest", PageToken: crafted("welcome", "")}, "page_token"},
			{"another customer's token", &campaignv1.ListCustomerEnrollmentsRequest{CustomerId: "other", PageToken: valid}, "page_token"},
			{"a page's token with garbage after it", &campaignv1.ListCustomerEnrollmentsRequest{CustomerId: "guest", PageToken: valid + "!"}, "page_token"},
			{"bad campaign", &campaignv1.ListCustomerEnrollmentsRequest{CustomerId: "guest", CampaignId: "Welcome!"}, "campaign_id"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				_, err := s.client().ListCustomerEnrollments(ctx, tc.req, tok)
				if status.Code(err) != codes.InvalidArgument {
					t.Fatalf("got %v, want INVALID_ARGUMENT", err)
				}
				vs := server.Violations(err)
				if len(vs) != 1 || vs[0].Field != tc.field {
					t.Fatalf("violations %+v, want one naming %s", vs, tc.field)
				}
			})
		}
		// A long id is not a missing one.
		_, err := s.client().ListCustomerEnrollments(ctx, &campaignv1.ListCustomerEnrollmentsRequest{CustomerId: strings.Repeat("c", 300)}, tok)
		if vs := server.Violations(err); len(vs) != 1 || vs[0].Field != "customer_id" || vs[0].Description != "is 300 bytes: at most 256" {
			t.Fatalf("a 300-byte customer id: %v", err)
		}
	})
}
