package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	churnv1 "github.com/retainhq/retain/proto/gen/go/retain/churn/v1"
)

const churnUsage = `usage: retain churn COMMAND [flags]

Commands:
  risk CUSTOMER   a customer's churn risk, its reasons and the evidence
  list            customers by risk, highest first (--band high|medium|low)
  model           the tenant's fitted purchase model (BG/NBD)
  refit           fit the model again and rescore every customer
  weights         the tenant's score weights, band thresholds and hysteresis
  weights set     change them (--outlook 70 --tickets 35 ...) and rescore

Every command takes --output json (the gRPC response as protojson), --addr
and --token. --as-of takes a date (1997-09-30, meaning the end of that day,
UTC) or an RFC 3339 instant, and uses only events from before it.`

// runChurn is `retain churn risk|list|model|refit|weights`.
func runChurn(ctx context.Context, env *cliEnv, args []string) error {
	return subcommands(env, "churn", churnUsage, args, map[string]func([]string) error{
		"risk":  func(a []string) error { return runChurnRisk(ctx, env, a) },
		"list":  func(a []string) error { return runChurnList(ctx, env, a) },
		"model": func(a []string) error { return runChurnModel(ctx, env, a) },
		"refit": func(a []string) error { return runChurnRefit(ctx, env, a) },
		"weights": func(a []string) error {
			if len(a) > 0 && a[0] == "set" {
				return runChurnWeightsSet(ctx, env, a[1:])
			}
			return runChurnWeights(ctx, env, a)
		},
	})
}

// churnAPI is the ChurnService of the churn-signal service, which the churn
// commands call.
var churnAPI = serviceAPI[churnv1.ChurnServiceClient]{
	newClient: churnv1.NewChurnServiceClient,
	name:      "churn-signal",
	scopes:    "read, or admin for refit and weights set",
}

// parseChurnAsOf reads --as-of: a date is the end of that day in UTC, so
// that the whole day's events count (the CDNOW calibration period ends on
// 1997-09-30 inclusive).
func parseChurnAsOf(s string) (*timestamppb.Timestamp, error) {
	if s == "" {
		return nil, nil
	}
	if d, err := time.Parse(time.DateOnly, s); err == nil {
		return timestamppb.New(d.Add(24*time.Hour - time.Nanosecond)), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return nil, errors.New("want a date (2006-01-02) or an RFC 3339 instant")
	}
	return timestamppb.New(t), nil
}

func runChurnRisk(ctx context.Context, env *cliEnv, args []string) error {
	f := newCommandFlags(env, "churn risk", "churn risk CUSTOMER [--as-of DATE] [--output text|json]")
	asOf := valueFlag(f.fs, "as-of", "", "evaluate as of this date or instant, using only events before it (default now)", parseChurnAsOf)
	customer, err := f.parseOne(args, "CUSTOMER id")
	if err != nil {
		return err
	}
	return callAndPrint(env.stdout, f, churnAPI, func(c churnv1.ChurnServiceClient) (*churnv1.GetCustomerRiskResponse, error) {
		resp, err := c.GetCustomerRisk(ctx, &churnv1.GetCustomerRiskRequest{CustomerId: customer, AsOf: *asOf})
		return resp, notFoundAs(err, fmt.Sprintf("churn risk for customer %q", customer))
	}, func(w io.Writer, resp *churnv1.GetCustomerRiskResponse) error {
		printChurnRisk(w, resp)
		return nil
	})
}

func churnBandName(b churnv1.RiskBand) string {
	return strings.ToLower(strings.TrimPrefix(b.String(), "RISK_BAND_"))
}

func printChurnReasons(w io.Writer, indent string, rs []*churnv1.RiskReason) {
	if len(rs) == 0 {
		fmt.Fprintf(w, "%sno warning signs\n", indent)
	}
	for _, r := range rs {
		fmt.Fprintf(w, "%s+%-3d %-17s %s\n", indent, r.GetContribution(), r.GetCode(), r.GetDescription())
	}
}

func printChurnRisk(w io.Writer, resp *churnv1.GetCustomerRiskResponse) {
	r, f := resp.GetRisk(), resp.GetFeatures()
	fmt.Fprintf(w, "%s: %s risk, score %d/100 (as of %s)\n", r.GetCustomerId(), strings.ToUpper(churnBandName(r.GetBand())),
		r.GetScore(), r.GetAsOf().AsTime().UTC().Format("2006-01-02 15:04 MST"))
	printChurnReasons(w, "  ", r.GetReasons())
	fmt.Fprintln(w, "evidence:")
	if f.GetOrders() > 0 {
		fmt.Fprintf(w, "  orders     %d on %d days, the last %d days ago (typical gap %.1f days); mean order %s\n",
			f.GetOrders(), f.GetPurchaseDays(), f.GetDaysSinceLastOrder(), f.GetTypicalGapDays(),
			moneyText(f.GetMeanOrderValue().GetAmountMinor(), f.GetMeanOrderValue().GetCurrency(), true))
	} else {
		fmt.Fprintln(w, "  orders     none")
	}
	fmt.Fprintf(w, "  tickets    %d in 30 days, %d in 90, %d open, %d about billing or price in 90 days\n",
		f.GetTickets_30D(), f.GetTickets_90D(), f.GetOpenTickets(), f.GetBillingTickets_90D())
	var surveys []string
	if f.LatestNps != nil {
		surveys = append(surveys, fmt.Sprintf("NPS %d (mean %.1f)", f.GetLatestNps(), f.GetMeanNps()))
	}
	if f.LatestCsat != nil {
		surveys = append(surveys, fmt.Sprintf("CSAT %d of 5 (mean %.1f)", f.GetLatestCsat(), f.GetMeanCsat()))
	}
	if len(surveys) == 0 {
		surveys = append(surveys, "no answers")
	}
	fmt.Fprintf(w, "  surveys    %s\n", strings.Join(surveys, ", "))
	if f.GetRenewalDate() != "" {
		fmt.Fprintf(w, "  renewal    %s\n", f.GetRenewalDate())
	}
	if f.ExpectedPurchases != nil {
		// The BG/NBD sees a dropout only between repeat orders, so a
		// customer who bought on one day only is "alive" by construction:
		// say so, or P(alive) 1.00 next to a high risk reads as a bug.
		note := ""
		if f.GetPurchaseDays() <= 1 {
			note = " (always 1 before a second order: the risk uses the orders expected)"
		}
		fmt.Fprintf(w, "  model      %.2f orders expected in the next %g weeks, P(no order) %.2f, P(alive) %.2f%s\n",
			f.GetExpectedPurchases(), f.GetHorizonWeeks(), f.GetPNoPurchase(), f.GetPAlive(), note)
	} else {
		fmt.Fprintln(w, "  model      not fitted yet (`retain churn refit`)")
	}
}

func parseChurnBand(s string) (churnv1.RiskBand, error) {
	switch strings.ToLower(s) {
	case "", "all":
		return churnv1.RiskBand_RISK_BAND_UNSPECIFIED, nil
	case "high":
		return churnv1.RiskBand_RISK_BAND_HIGH, nil
	case "medium":
		return churnv1.RiskBand_RISK_BAND_MEDIUM, nil
	case "low":
		return churnv1.RiskBand_RISK_BAND_LOW, nil
	}
	return 0, errors.New("want high, medium, low or all")
}

// parseAtRiskOrder reads --order: an order of ListAtRisk's. Unset is
// score order (the service's default), sent as unset, so that a page
// token of a listing without --order continues with --order score.
func parseAtRiskOrder(s string) (churnv1.AtRiskOrder, error) {
	switch strings.ToLower(s) {
	case "score":
		return churnv1.AtRiskOrder_AT_RISK_ORDER_UNSPECIFIED, nil
	case "customer":
		return churnv1.AtRiskOrder_AT_RISK_ORDER_CUSTOMER_ID, nil
	}
	return 0, errors.New("want score or customer")
}

func runChurnList(ctx context.Context, env *cliEnv, args []string) error {
	f := newCommandFlags(env, "churn list", "churn list [--band high|medium|low|all] [--order score|customer] [--limit N] [--output text|json]")
	band := valueFlag(f.fs, "band", "all", "only customers in this band: high, medium, low or all", parseChurnBand)
	limit := valueFlag(f.fs, "limit", "20", "how many customers to list, 1-10000", intIn(1, 10000))
	order := valueFlag(f.fs, "order", "score", "score: most at risk first, a customer whose score changes while you page may be missed or listed twice; customer: by customer id, every customer in the band listed exactly once across the pages (an export)", parseAtRiskOrder)
	pageToken := f.fs.String("page-token", "", "continue after a previous listing (json output's next_page_token)")
	if err := f.parseNone(args, "churn list", ""); err != nil {
		return err
	}
	// empty says why nothing is listed. An empty band says nothing of the
	// other bands, so the text output asks for one customer of any band:
	// "no customers scored yet" only when there is none.
	empty := "no customers scored yet"
	return callAndPrint(env.stdout, f, churnAPI, func(c churnv1.ChurnServiceClient) (*churnv1.ListAtRiskResponse, error) {
		rs, next, err := pagesUpTo(*limit, 1000, *pageToken, func(size int32, tok string) ([]*churnv1.CustomerRisk, string, error) {
			resp, err := c.ListAtRisk(ctx, &churnv1.ListAtRiskRequest{Band: *band, Order: *order, PageSize: size, PageToken: tok})
			return resp.GetCustomers(), resp.GetNextPageToken(), err
		})
		if err != nil {
			return nil, err
		}
		switch {
		case len(rs) > 0 || *f.output == "json":
		case *pageToken != "":
			empty = "no more customers after this page token"
		case *band != churnv1.RiskBand_RISK_BAND_UNSPECIFIED:
			some, err := c.ListAtRisk(ctx, &churnv1.ListAtRiskRequest{PageSize: 1})
			if err != nil {
				return nil, err
			}
			if len(some.GetCustomers()) > 0 {
				empty = fmt.Sprintf("no customers at %s risk (customers are scored, in other bands: `retain churn list` lists every band)", churnBandName(*band))
			}
		}
		return &churnv1.ListAtRiskResponse{Customers: rs, NextPageToken: next}, nil
	}, func(w io.Writer, all *churnv1.ListAtRiskResponse) error {
		if len(all.GetCustomers()) == 0 {
			fmt.Fprintln(w, empty)
			return nil
		}
		printChurnList(w, all.GetCustomers(), 2)
		if all.GetNextPageToken() != "" {
			fmt.Fprintf(w, "%s --page-token %s\n", moreOfTheSame, all.GetNextPageToken())
		}
		return nil
	})
}

// printChurnList prints one line per customer with their top reasons.
func printChurnList(w io.Writer, rs []*churnv1.CustomerRisk, reasons int) {
	width := len("CUSTOMER")
	for _, r := range rs {
		width = max(width, min(len(r.GetCustomerId()), 40))
	}
	fmt.Fprintf(w, "%-*s  %5s  %-6s  %s\n", width, "CUSTOMER", "SCORE", "BAND", "TOP REASONS")
	for _, r := range rs {
		var top []string
		for i, x := range r.GetReasons() {
			if i == reasons {
				break
			}
			top = append(top, x.GetDescription())
		}
		fmt.Fprintf(w, "%-*s  %5d  %-6s  %s\n", width, r.GetCustomerId(), r.GetScore(), churnBandName(r.GetBand()), strings.Join(top, "; "))
	}
}

func runChurnModel(ctx context.Context, env *cliEnv, args []string) error {
	f := newCommandFlags(env, "churn model", "churn model [--output text|json]")
	if err := f.parseNone(args, "churn model", ""); err != nil {
		return err
	}
	return callAndPrint(env.stdout, f, churnAPI, func(c churnv1.ChurnServiceClient) (*churnv1.GetModelResponse, error) {
		resp, err := c.GetModel(ctx, &churnv1.GetModelRequest{})
		if status.Code(err) == codes.NotFound {
			// Not a status, so callError passes it on as it is.
			return nil, errors.New("no model fitted yet: run `retain churn refit` (the hourly rescoring fits one too)")
		}
		return resp, err
	}, func(w io.Writer, resp *churnv1.GetModelResponse) error {
		printChurnModel(w, resp.GetModel())
		return nil
	})
}

func printChurnModel(w io.Writer, m *churnv1.Model) {
	refits := "\n  refit by itself a day after this fit, or from 5 minutes after it once the shop's orders or customers grew by 25%"
	if m.GetPinned() {
		refits = ", pinned: scheduled refits leave it until `retain churn refit` without --as-of"
	}
	fmt.Fprintf(w, "BG/NBD purchase model, fitted %s on orders up to %s%s\n",
		m.GetFittedAt().AsTime().UTC().Format("2006-01-02 15:04 MST"), m.GetAsOf().AsTime().UTC().Format("2006-01-02 15:04:05 MST"), refits)
	fmt.Fprintf(w, "  r     %9.4f   alpha %9.4f   purchase rates ~ Gamma(r, alpha): mean %.3f a week\n", m.GetR(), m.GetAlpha(), m.GetR()/m.GetAlpha())
	fmt.Fprintf(w, "  a     %9.4f   b     %9.4f   dropout after a purchase ~ Beta(a, b): mean %.3f\n", m.GetA(), m.GetB(), m.GetA()/(m.GetA()+m.GetB()))
	conv := "converged"
	if !m.GetConverged() {
		conv = "NOT converged"
	}
	fmt.Fprintf(w, "  log-likelihood %.2f over %d customers (%s); typical gap between purchase days %.1f days\n",
		m.GetLogLikelihood(), m.GetCustomers(), conv, m.GetTypicalGapDays())
}

func runChurnRefit(ctx context.Context, env *cliEnv, args []string) error {
	f := newCommandFlags(env, "churn refit", "churn refit [--as-of DATE] [--output text|json]")
	asOf := valueFlag(f.fs, "as-of", "", "fit on orders placed by this date or instant (pins the model; default now)", parseChurnAsOf)
	if err := f.parseNone(args, "churn refit", ""); err != nil {
		return err
	}
	callCtx, cancel := context.WithTimeout(ctx, 30*time.Minute) // rescores every customer
	defer cancel()
	return callAndPrint(env.stdout, f, churnAPI, func(c churnv1.ChurnServiceClient) (*churnv1.RefitResponse, error) {
		return c.Refit(callCtx, &churnv1.RefitRequest{AsOf: *asOf})
	}, func(w io.Writer, resp *churnv1.RefitResponse) error {
		printChurnModel(w, resp.GetModel())
		fmt.Fprintf(w, "rescored %d customers as of now: %d changed band\n", resp.GetCustomersRescored(), resp.GetBandChanges())
		return nil
	})
}

// printChurnDemo is the churn part of the `retain dev --demo` report: it
// fits the model on what the service has consumed (the caller waits for its
// consumer to catch up first), then prints the customers most at risk with
// their reasons.
func printChurnDemo(ctx context.Context, w io.Writer, conn grpc.ClientConnInterface) error {
	c := churnv1.NewChurnServiceClient(conn)
	// The caller waited for the churn consumer to catch up, so the model is
	// fitted on every order the demo sent.
	refit, err := c.Refit(ctx, &churnv1.RefitRequest{})
	if err != nil {
		return fmt.Errorf("churn: refit: %w", churnAPI.fail(err))
	}
	m := refit.GetModel()
	fmt.Fprintf(w, "\nChurn risk (`retain churn list --band high`, `retain churn risk CUSTOMER`)\n")
	fmt.Fprintf(w, "BG/NBD model over %d customers: r=%.3f alpha=%.3f a=%.3f b=%.3f, log-likelihood %.1f\n",
		m.GetCustomers(), m.GetR(), m.GetAlpha(), m.GetA(), m.GetB(), m.GetLogLikelihood())
	counts := map[churnv1.RiskBand]int{}
	for _, b := range []churnv1.RiskBand{churnv1.RiskBand_RISK_BAND_HIGH, churnv1.RiskBand_RISK_BAND_MEDIUM} {
		tok := ""
		for {
			// A count visits every customer of the band: by customer id,
			// which no rescoring meanwhile moves (decision 0050).
			resp, err := c.ListAtRisk(ctx, &churnv1.ListAtRiskRequest{Band: b, Order: churnv1.AtRiskOrder_AT_RISK_ORDER_CUSTOMER_ID, PageSize: 1000, PageToken: tok})
			if err != nil {
				return fmt.Errorf("churn: list: %w", churnAPI.fail(err))
			}
			counts[b] += len(resp.GetCustomers())
			if tok = resp.GetNextPageToken(); tok == "" {
				break
			}
		}
	}
	fmt.Fprintf(w, "%d customers at high risk, %d at medium risk; the top 5:\n", counts[churnv1.RiskBand_RISK_BAND_HIGH], counts[churnv1.RiskBand_RISK_BAND_MEDIUM])
	top, err := c.ListAtRisk(ctx, &churnv1.ListAtRiskRequest{PageSize: 5})
	if err != nil {
		return fmt.Errorf("churn: list: %w", churnAPI.fail(err))
	}
	for _, r := range top.GetCustomers() {
		fmt.Fprintf(w, "  %s: score %d (%s)\n", r.GetCustomerId(), r.GetScore(), churnBandName(r.GetBand()))
		printChurnReasons(w, "    ", r.GetReasons())
	}
	return nil
}

func runChurnWeights(ctx context.Context, env *cliEnv, args []string) error {
	f := newCommandFlags(env, "churn weights", "churn weights [--output text|json]")
	if err := f.parseNone(args, "churn weights", "did you mean `churn weights set`?"); err != nil {
		return err
	}
	return callAndPrint(env.stdout, f, churnAPI, func(c churnv1.ChurnServiceClient) (*churnv1.GetWeightsResponse, error) {
		return c.GetWeights(ctx, &churnv1.GetWeightsRequest{})
	}, func(w io.Writer, resp *churnv1.GetWeightsResponse) error {
		if resp.GetDefault() {
			fmt.Fprintln(w, "churn score weights: the defaults (never set)")
		} else {
			fmt.Fprintf(w, "churn score weights, set %s\n", resp.GetUpdatedAt().AsTime().UTC().Format("2006-01-02 15:04 MST"))
		}
		printChurnWeights(w, resp.GetWeights(), resp.GetDefaults())
		return nil
	})
}

// churnWeightFlags are the flags of `churn weights set` and the
// SetWeightsRequest field each sets.
var churnWeightFlags = []struct {
	flag, field, usage string
	integer            bool
}{
	{"outlook", "purchase_outlook", "weight of the purchase model's outlook, 0-95 points", false},
	{"overdue", "overdue", "weight of the days since the last order against the usual gap, 0-95 points", false},
	{"tickets", "support_tickets", "weight of recent support tickets, 0-95 points", false},
	{"price", "price_complaints", "weight of billing/price tickets (doubled before a renewal), 0-95 points", false},
	{"sentiment", "sentiment", "weight of NPS/CSAT answers, 0-95 points", false},
	{"medium-at", "medium_at", "score at which a customer enters MEDIUM", true},
	{"high-at", "high_at", "score at which a customer enters HIGH", true},
	{"hysteresis", "hysteresis", "points below its threshold at which a band is left", true},
}

func runChurnWeightsSet(ctx context.Context, env *cliEnv, args []string) error {
	f := newCommandFlags(env, "churn weights set", "churn weights set [--outlook N] [--overdue N] [--tickets N] [--price N] [--sentiment N] [--medium-at N] [--high-at N] [--hysteresis N] [--rescore=false] [--output text|json]")
	weights := map[string]*float64{}
	thresholds := map[string]*int{}
	for _, w := range churnWeightFlags {
		if w.integer {
			thresholds[w.flag] = f.fs.Int(w.flag, 0, w.usage)
		} else {
			weights[w.flag] = f.fs.Float64(w.flag, 0, w.usage)
		}
	}
	rescore := f.fs.Bool("rescore", true, "rescore every customer with the new weights before returning (false: stored scores follow at the next scheduled pass)")
	if err := f.parseNone(args, "churn weights set", ""); err != nil {
		return err
	}
	// Only the flags given are sent: the others keep the tenant's values.
	req := &churnv1.SetWeightsRequest{Rescore: *rescore}
	msg := req.ProtoReflect()
	given := 0
	var bad error
	f.fs.Visit(func(fl *flag.Flag) {
		for _, w := range churnWeightFlags {
			if w.flag != fl.Name {
				continue
			}
			given++
			fd := msg.Descriptor().Fields().ByName(protoreflect.Name(w.field))
			if !w.integer {
				msg.Set(fd, protoreflect.ValueOfFloat64(*weights[w.flag]))
				continue
			}
			v := *thresholds[w.flag]
			if v < math.MinInt32 || v > math.MaxInt32 {
				bad = usagef("--%s %d: out of range", w.flag, v)
			}
			msg.Set(fd, protoreflect.ValueOfInt32(int32(v)))
		}
	})
	if bad != nil {
		return bad
	}
	if given == 0 {
		f.fs.Usage()
		return usagef("churn weights set needs at least one of --outlook, --overdue, --tickets, --price, --sentiment, --medium-at, --high-at, --hysteresis")
	}
	callCtx, cancel := context.WithTimeout(ctx, 30*time.Minute) // may rescore every customer
	defer cancel()
	return callAndPrint(env.stdout, f, churnAPI, func(c churnv1.ChurnServiceClient) (*churnv1.SetWeightsResponse, error) {
		return c.SetWeights(callCtx, req)
	}, func(w io.Writer, resp *churnv1.SetWeightsResponse) error {
		fmt.Fprintln(w, "churn score weights set:")
		printChurnWeights(w, resp.GetWeights(), nil)
		if *rescore {
			fmt.Fprintf(w, "rescored %d customers as of now: %d changed band\n", resp.GetCustomersRescored(), resp.GetBandChanges())
		} else {
			fmt.Fprintln(w, "new scores use them now; stored scores follow at the next rescoring pass")
		}
		return nil
	})
}

// printChurnWeights prints weights, next to the defaults when given.
func printChurnWeights(w io.Writer, ws, defaults *churnv1.Weights) {
	rows := []struct {
		name string
		v, d float64
	}{
		{"purchase_outlook", ws.GetPurchaseOutlook(), defaults.GetPurchaseOutlook()},
		{"overdue", ws.GetOverdue(), defaults.GetOverdue()},
		{"support_tickets", ws.GetSupportTickets(), defaults.GetSupportTickets()},
		{"price_complaints", ws.GetPriceComplaints(), defaults.GetPriceComplaints()},
		{"sentiment", ws.GetSentiment(), defaults.GetSentiment()},
		{"medium_at", float64(ws.GetMediumAt()), float64(defaults.GetMediumAt())},
		{"high_at", float64(ws.GetHighAt()), float64(defaults.GetHighAt())},
		{"hysteresis", float64(ws.GetHysteresis()), float64(defaults.GetHysteresis())},
	}
	for _, r := range rows {
		line := fmt.Sprintf("  %-17s %5g", r.name, r.v)
		if defaults != nil {
			line += fmt.Sprintf("   (default %g)", r.d)
		}
		fmt.Fprintln(w, line)
	}
	fmt.Fprintf(w, "bands: MEDIUM from %d, HIGH from %d; a band is left %d points below its threshold\n", ws.GetMediumAt(), ws.GetHighAt(), ws.GetHysteresis())
}
