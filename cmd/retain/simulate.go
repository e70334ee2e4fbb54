package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/retainhq/retain/platform/config"
	"github.com/retainhq/retain/platform/currency"
	"github.com/retainhq/retain/platform/simulate"
	eventsv1 "github.com/retainhq/retain/proto/gen/go/retain/events/v1"
)

func runSimulate(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlags(env, "simulate", "simulate [--customers N] [--days D] [--seed S] [--out FILE | --send]")
	ep := addEndpointFlags(fs, env)
	def := simulate.DefaultConfig()
	customers := fs.Int("customers", 1000, "customers acquired over the period")
	days := fs.Int("days", 365, "days of history")
	seed := fs.Int64("seed", 1, "random seed: the same seed gives the same shop, byte for byte")
	end := valueFlag(fs, "end", "", "end of the period, YYYY-MM-DD (default: today, UTC)", func(s string) (time.Time, error) {
		if s == "" {
			return time.Now().UTC().Truncate(24 * time.Hour), nil
		}
		t, err := time.Parse(time.DateOnly, s)
		if err != nil {
			return t, errors.New("want YYYY-MM-DD")
		}
		return t, nil
	})
	// The table ingest checks orders against: a shop in a currency ingest
	// refuses would be refused event by event.
	cur := valueFlag(fs, "currency", def.Currency, "ISO-4217 currency of the shop, upper case as ingest takes it", func(s string) (string, error) {
		return s, currency.Check(s)
	})
	rateScale := fs.Float64("rate-scale", def.RateScale, "multiplies every customer's purchase rate (10 gives roughly ten times the orders of a CDNOW-like shop)")
	out := fs.String("out", "-", "NDJSON output file ('-': stdout)")
	send := fs.Bool("send", false, "send the events to Retain's ingest API instead of writing NDJSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := noArgs(fs.Args(), "simulate", "flags only"); err != nil {
		return err
	}
	var v config.Validator
	checkShop(&v, "--customers", func(c *simulate.Config) { c.Customers = *customers })
	checkShop(&v, "--days", func(c *simulate.Config) { c.Days = *days })
	checkShop(&v, "--rate-scale", func(c *simulate.Config) { c.RateScale = *rateScale })
	if err := v.Err(); err != nil {
		return err
	}
	cfg := def
	cfg.Customers, cfg.Days, cfg.Seed, cfg.Currency, cfg.RateScale = *customers, *days, *seed, *cur, *rateScale
	cfg.Start = end.AddDate(0, 0, -*days)
	shop, err := simulate.New(cfg)
	if err != nil {
		// Every setting is a flag's: what the checks above let through
		// (a start before 1970, from --end and --days) is one too.
		return usageError{err}
	}
	if *send {
		conn, err := ep.dial()
		if err != nil {
			return err
		}
		defer conn.Close()
		sum, err := newSender(conn, env.stderr).send(ctx, eventPump(ctx, shop, func(*eventsv1.Event) {}))
		if sum != nil {
			printSummary(env.stdout, sum, 20)
			if sum.accepted > 0 {
				fmt.Fprintln(env.stdout, appliedLater)
			}
		}
		return err
	}
	var w io.Writer = env.stdout
	if *out != "-" {
		f, err := os.Create(*out)
		if err != nil {
			return err
		}
		defer f.Close()
		w = f
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	n, err := simulate.WriteNDJSON(bw, shop)
	if err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	where := ""
	if *out != "-" {
		where = " to " + *out
	}
	fmt.Fprintf(env.stderr, "wrote %d events%s: %s\n", n, where, simulateSummary(shop.Stats()))
	return nil
}

// simulateSummary is what a simulated shop holds, in words.
func simulateSummary(st simulate.Stats) string {
	count := func(n int, one, many string) string {
		if n == 1 {
			return "1 " + one
		}
		return fmt.Sprintf("%d %s", n, many)
	}
	refunds := count(st.Refunds, "refund", "refunds")
	if st.Refunds > 0 {
		refunds += " of " + moneyText(st.Refunded, st.Currency, true)
	}
	return fmt.Sprintf("%s, %s worth %s, %s, %s (%d resolved), %s and %s; %s ordered more than once, %d left",
		count(st.Customers, "customer", "customers"), count(st.Orders, "order", "orders"), moneyText(st.Revenue, st.Currency, true), refunds,
		count(st.TicketsOpened, "support ticket", "support tickets"), st.TicketsResolved,
		count(st.NPSAnswers, "NPS answer", "NPS answers"), count(st.CSATAnswers, "CSAT answer", "CSAT answers"),
		count(st.RepeatCustomers, "customer", "customers"), st.DroppedCustomers)
}
