package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	opsv1 "github.com/retainhq/retain/proto/gen/go/retain/ops/v1"
)

const deadLettersUsage = `usage: retain deadletters [COMMAND] [flags]

Messages a consumer gave up on (cannot decode, fails validation, or failed
MaxDeliver times), of your tenant. Needs an admin token.

Commands:
  (none)                    every consumer and how many dead letters await replay
  list CONSUMER [--all]     a consumer's dead letters with the reason, oldest first
  replay CONSUMER ID...     run the consumer on the stored messages again (after a fix)

Every command takes --output json, --addr and --token.`

// runDeadLetters is `retain deadletters [list|replay]`.
func runDeadLetters(ctx context.Context, env *cliEnv, args []string) error {
	cmd := ""
	if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
		fmt.Fprintln(env.stderr, deadLettersUsage)
		return nil
	}
	if len(args) > 0 && args[0] != "" && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	if cmd != "list" && cmd != "replay" && cmd != "" {
		fmt.Fprintln(env.stderr, deadLettersUsage)
		return usagef("unknown deadletters command %q: want list or replay", cmd)
	}
	f := newCommandFlags(env, strings.TrimSpace("deadletters "+cmd), "deadletters "+cmd+" [flags]")
	all := f.fs.Bool("all", false, "list: include dead letters already replayed")
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	// The arguments are checked before anything is dialed: a command line
	// that lacks one is a usage error wherever Retain runs.
	var ids []int64
	switch cmd {
	case "":
		if len(pos) > 0 {
			return usagef("unknown deadletters command %q: want list or replay, before the flags", pos[0])
		}
	case "list":
		if len(pos) != 1 {
			return usagef("deadletters list needs one CONSUMER, got %d arguments (retain deadletters lists the consumers)", len(pos))
		}
	case "replay":
		if len(pos) < 2 {
			return usagef("deadletters replay needs a CONSUMER and at least one ID (ids: retain deadletters list CONSUMER)")
		}
		for _, s := range pos[1:] {
			id, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				return usagef("dead letter ID %q: not a number", s)
			}
			ids = append(ids, id)
		}
	}
	output := f.output
	conn, err := f.ep.dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	client := opsv1.NewDeadLetterServiceClient(conn)
	fail := func(err error) error { return callError(err, "dead-letter", "admin") }

	switch cmd {
	case "":
		resp, err := client.ListConsumers(ctx, &opsv1.ListConsumersRequest{})
		if err != nil {
			return fail(err)
		}
		if *output == "json" {
			return printJSON(env.stdout, resp)
		}
		tw := tabwriter.NewWriter(env.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "CONSUMER\tSTREAM\tDEAD LETTERS")
		for _, c := range resp.GetConsumers() {
			fmt.Fprintf(tw, "%s\t%s\t%d\n", c.GetName(), c.GetStream(), c.GetPendingDeadLetters())
		}
		return tw.Flush()

	case "list":
		req := &opsv1.ListDeadLettersRequest{Consumer: pos[0], IncludeReplayed: *all, PageSize: 500}
		resp := &opsv1.ListDeadLettersResponse{}
		for {
			page, err := client.ListDeadLetters(ctx, req)
			if err != nil {
				return fail(err)
			}
			resp.DeadLetters = append(resp.DeadLetters, page.GetDeadLetters()...)
			if req.PageToken = page.GetNextPageToken(); req.PageToken == "" {
				break
			}
		}
		if *output == "json" {
			return printJSON(env.stdout, resp)
		}
		if len(resp.GetDeadLetters()) == 0 {
			fmt.Fprintf(env.stdout, "%s: no dead letters\n", pos[0])
			return nil
		}
		tw := tabwriter.NewWriter(env.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tFAILED AT\tTYPE\tMESSAGE ID\tDELIVERIES\tREPLAYED\tREASON")
		for _, d := range resp.GetDeadLetters() {
			replayed := "-"
			if d.GetReplayedAt() != nil {
				replayed = d.GetReplayedAt().AsTime().Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%s\t%s\n", d.GetId(), d.GetFailedAt().AsTime().Format(time.RFC3339),
				d.GetType(), d.GetMsgId(), d.GetNumDelivered(), replayed, d.GetReason())
		}
		return tw.Flush()

	case "replay":
		// Each id is replayed on its own: one that is rejected again must
		// not hold back the others, and every outcome is reported.
		var failed int
		for _, id := range ids {
			resp, err := client.ReplayDeadLetter(ctx, &opsv1.ReplayDeadLetterRequest{Consumer: pos[0], Id: id})
			if err != nil {
				failed++
				fmt.Fprintf(env.stderr, "%d: %v\n", id, fail(err))
				continue
			}
			if *output == "json" {
				if err := printJSON(env.stdout, resp); err != nil {
					return err
				}
				continue
			}
			fmt.Fprintf(env.stdout, "%d: replayed (%s %s)\n", id, resp.GetDeadLetter().GetType(), resp.GetDeadLetter().GetMsgId())
		}
		if failed > 0 {
			return fmt.Errorf("%d of %d dead letters not replayed", failed, len(ids))
		}
	}
	return nil
}
