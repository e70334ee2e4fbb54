package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/retainhq/retain/cmd/retain/internal/importer"
	"github.com/retainhq/retain/platform/auth"
	"github.com/retainhq/retain/platform/server"
	eventsv1 "github.com/retainhq/retain/proto/gen/go/retain/events/v1"
	notifierv1 "github.com/retainhq/retain/proto/gen/go/retain/notifier/v1"
	"github.com/retainhq/retain/services/notifier/templatefile"
)

const templatesUsage = `usage: retain templates COMMAND [flags]

Commands:
  list                      the latest version of every template (--channel email|sms|webhook)
  show KEY                  a template in its file form (--channel, --version N)
  apply -f FILE             create the templates in FILE (YAML, one per document), or store
                            their next version; the notifier checks them all first, and
                            none is saved if it refuses any
  preview KEY --customer C  render it as that customer would get it: their name, locale and
                            time zone (--locale fa-IR, --time-zone, --var name=value override);
                            without --customer, for a sample customer: first name Sample,
                            last name Customer, no email or phone

Every command takes --output json (the gRPC response as protojson), --addr
and --token. --channel defaults to email.`

const deliveriesUsage = `usage: retain deliveries COMMAND [flags]

Commands:
  list --customer C | --campaign X   deliveries, newest first, with their status and reason
  show REQUEST_ID                    one delivery and its decision trail: every policy step
                                     and send attempt, with the reason

Every command takes --output json (the gRPC response as protojson), --addr
and --token.`

const preferencesUsage = `usage: retain preferences COMMAND [flags]

Commands:
  get CUSTOMER    what the customer receives, per channel and category, and where
                  each choice comes from (the shop's consent, an unsubscribe link, the API)
  set CUSTOMER --email-marketing=false [--email-transactional=B --sms-marketing=B --sms-transactional=B]

Every command takes --output json (the gRPC response as protojson), --addr
and --token.`

// notifierAPI is the NotifierService the templates, deliveries and
// preferences commands call.
var notifierAPI = serviceAPI[notifierv1.NotifierServiceClient]{
	newClient: notifierv1.NewNotifierServiceClient,
	name:      "notifier",
	scopes:    auth.ScopeRead + " (" + auth.ScopeCampaignsWrite + " to change templates and preferences)",
}

// runTemplates is `retain templates list|show|apply|preview`.
func runTemplates(ctx context.Context, env *cliEnv, args []string) error {
	return subcommands(env, "templates", templatesUsage, args, map[string]func([]string) error{
		"list":    func(a []string) error { return templatesList(ctx, env, a) },
		"show":    func(a []string) error { return templatesShow(ctx, env, a) },
		"apply":   func(a []string) error { return templatesApply(ctx, env, a) },
		"preview": func(a []string) error { return templatesPreview(ctx, env, a) },
	})
}

// channelFlag is --channel: email by default, or every channel (the
// unspecified one) if allowAll.
func channelFlag(f commandFlags, allowAll bool) *notifierv1.Channel {
	def, help := "email", "email, sms or webhook"
	if allowAll {
		def, help = "", "email, sms or webhook (default: all)"
	}
	return valueFlag(f.fs, "channel", def, help, func(s string) (notifierv1.Channel, error) {
		if s == "" {
			return notifierv1.Channel_CHANNEL_UNSPECIFIED, nil
		}
		c, err := templatefile.ParseChannel(s)
		if err != nil {
			return 0, errors.New("want email, sms or webhook")
		}
		return c, nil
	})
}

func templatesList(ctx context.Context, env *cliEnv, args []string) error {
	f := newCommandFlags(env, "templates list", "templates list [--channel email|sms|webhook] [--output text|json]")
	ch := channelFlag(f, true)
	if err := f.parseNone(args, "templates list", ""); err != nil {
		return err
	}
	return callAndPrint(env.stdout, f, notifierAPI, func(c notifierv1.NotifierServiceClient) (*notifierv1.ListTemplatesResponse, error) {
		return c.ListTemplates(ctx, &notifierv1.ListTemplatesRequest{Channel: *ch})
	}, func(w io.Writer, resp *notifierv1.ListTemplatesResponse) error {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "KEY\tCHANNEL\tVERSION\tLOCALES\tVARIABLES\tDESCRIPTION")
		for _, t := range resp.GetTemplates() {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\n", t.GetKey(), templatefile.ChannelName(t.GetChannel()), t.GetVersion(),
				templateLocales(t), templateVariables(t), t.GetDescription())
		}
		return tw.Flush()
	})
}

func templateLocales(t *notifierv1.Template) string {
	var ls []string
	for _, v := range t.GetVariants() {
		ls = append(ls, cmp.Or(v.GetLocale(), "default"))
	}
	return strings.Join(ls, ",")
}

func templateVariables(t *notifierv1.Template) string {
	var vs []string
	for _, v := range t.GetVariables() {
		s := v.GetName() + ":" + v.GetType()
		if v.GetOptional() {
			s += "?"
		}
		vs = append(vs, s)
	}
	if len(vs) == 0 {
		return "-"
	}
	return strings.Join(vs, ",")
}

func templatesShow(ctx context.Context, env *cliEnv, args []string) error {
	f := newCommandFlags(env, "templates show", "templates show KEY [--channel email|sms|webhook] [--version N] [--output text|json]")
	ch := channelFlag(f, false)
	version := f.fs.Int("version", 0, "an older version (default: the latest)")
	key, err := f.parseOne(args, "template key")
	if err != nil {
		return err
	}
	chGiven := flagSet(f.fs, "channel")
	// The key's templates on the other channels, which the text names when
	// --channel was left to its default.
	var others []string
	return callAndPrint(env.stdout, f, notifierAPI, func(c notifierv1.NotifierServiceClient) (*notifierv1.GetTemplateResponse, error) {
		resp, err := c.GetTemplate(ctx, &notifierv1.GetTemplateRequest{Key: key, Channel: *ch, Version: int32(*version)})
		if err != nil {
			return nil, templateNotFound(ctx, c, err, key, *ch, int32(*version), chGiven)
		}
		if !chGiven && *f.output == "text" {
			// Only a hint: the template itself is what was asked for, so
			// a failed listing leaves it out rather than fail the command.
			if ts, err := keyTemplates(ctx, c, key); err == nil {
				for _, t := range ts {
					if t.GetChannel() != *ch {
						others = append(others, templatefile.ChannelName(t.GetChannel()))
					}
				}
			}
		}
		return resp, nil
	}, func(w io.Writer, resp *notifierv1.GetTemplateResponse) error {
		t := resp.GetTemplate()
		b, err := templatefile.Format(t)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "# %s (%s): version %d, saved %s\n",
			t.GetKey(), templatefile.ChannelName(t.GetChannel()), t.GetVersion(), t.GetCreatedAt().AsTime().UTC().Format(time.RFC3339))
		if len(others) > 0 {
			fmt.Fprintf(w, "# %s is on %s too: %s\n", t.GetKey(), strings.Join(others, " and "), channelFlags(others))
		}
		fmt.Fprintln(w, "# Edit and run: retain templates apply -f FILE")
		_, err = w.Write(b)
		return err
	})
}

// keyTemplates is the latest version of key on each channel it is on.
func keyTemplates(ctx context.Context, c notifierv1.NotifierServiceClient, key string) ([]*notifierv1.Template, error) {
	resp, err := c.ListTemplates(ctx, &notifierv1.ListTemplatesRequest{})
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(resp.GetTemplates(), func(t *notifierv1.Template) bool { return t.GetKey() != key }), nil
}

// channelFlags is the --channel of each of channels, for a message.
func channelFlags(channels []string) string {
	return "--channel " + strings.Join(channels, " or --channel ")
}

// templateNotFound explains the notifier's NotFound for a template by the
// channels the key is on: the --channel to pass, that no channel has it,
// or that the version is not there. A NotFound that is not the template's
// (a preview's customer) and any other error pass unchanged, as does a
// NotFound the listing cannot explain.
func templateNotFound(ctx context.Context, c notifierv1.NotifierServiceClient, err error, key string, ch notifierv1.Channel, version int32, chGiven bool) error {
	if status.Code(err) != codes.NotFound {
		return err
	}
	ts, lerr := keyTemplates(ctx, c, key)
	if lerr != nil {
		return err
	}
	name := templatefile.ChannelName(ch)
	var on []string
	for _, t := range ts {
		if t.GetChannel() == ch {
			if version > t.GetVersion() {
				return fmt.Errorf("%s template %q has no version %d: its latest is %d", name, key, version, t.GetVersion())
			}
			return err
		}
		on = append(on, templatefile.ChannelName(t.GetChannel()))
	}
	if len(on) == 0 {
		return fmt.Errorf("no template %q on any channel (retain templates list lists them)", key)
	}
	dflt := ""
	if !chGiven {
		dflt = " (--channel defaults to " + name + ")"
	}
	return fmt.Errorf("no %s template %q%s: %q is on %s; pass %s", name, key, dflt, key, strings.Join(on, " and "), channelFlags(on))
}

func templatesApply(ctx context.Context, env *cliEnv, args []string) error {
	f := newCommandFlags(env, "templates apply", "templates apply -f FILE [--output text|json]")
	file := f.fs.String("f", "", "template file, YAML with one template per document (- for stdin)")
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	if *file == "" || len(pos) != 0 {
		f.fs.Usage()
		return usagef("templates apply needs -f FILE and no arguments")
	}
	var data []byte
	if *file == "-" {
		data, err = io.ReadAll(io.LimitReader(env.stdin, templatefile.MaxSize+1))
	} else {
		data, err = os.ReadFile(*file)
	}
	if err != nil {
		return err
	}
	ts, err := templatefile.Parse(data)
	if err != nil {
		return fmt.Errorf("%s: %w", *file, err)
	}
	// Not callAndPrint: what was saved before a refused template is printed
	// along with the error.
	c, done, err := clientOf(f.ep, notifierAPI.newClient)
	if err != nil {
		return err
	}
	defer done()
	// The notifier saves one template a call, so the file is checked whole
	// first: one refused template and none is saved.
	src := *file
	if src == "-" {
		src = "stdin"
	}
	if err := checkTemplates(ctx, c, ts, src); err != nil {
		return err
	}
	saved := &notifierv1.ListTemplatesResponse{}
	var lines []string
	// A template that exists gets its next version (none if it is the
	// same); a new one is created. Each is saved on its own, in file order.
	// The check above makes a refusal here rare (a template created or
	// changed meanwhile): it stops the rest, and what was saved before it
	// is reported.
	for i, t := range ts {
		out, verb, err := putTemplate(ctx, c, t, false)
		if err != nil {
			for _, l := range lines {
				fmt.Fprintln(env.stdout, l)
			}
			return fmt.Errorf("template %s (%s): %w\n%s passed the check before saving, but the save was refused: "+
				"the %d templates before this one were saved (listed above), this one and the %d after it were not; "+
				"apply the file again to save them (the saved ones answer unchanged)",
				t.GetKey(), templatefile.ChannelName(t.GetChannel()), notifierAPI.fail(err), src, i, len(ts)-i-1)
		}
		saved.Templates = append(saved.Templates, out)
		lines = append(lines, fmt.Sprintf("template %s (%s) %s: version %d", out.GetKey(), templatefile.ChannelName(out.GetChannel()), verb, out.GetVersion()))
	}
	if *f.output == "json" {
		return printJSON(env.stdout, saved)
	}
	for _, l := range lines {
		fmt.Fprintln(env.stdout, l)
	}
	return nil
}

// putTemplate saves t (only checks it, with validateOnly): as the next
// version of the template when it exists, else as a new one. verb says
// which ("updated", "unchanged", "created").
func putTemplate(ctx context.Context, c notifierv1.NotifierServiceClient, t *notifierv1.Template, validateOnly bool) (*notifierv1.Template, string, error) {
	up, err := c.UpdateTemplate(ctx, &notifierv1.UpdateTemplateRequest{Template: t, ValidateOnly: validateOnly})
	if status.Code(err) == codes.NotFound {
		cr, err := c.CreateTemplate(ctx, &notifierv1.CreateTemplateRequest{Template: t, ValidateOnly: validateOnly})
		return cr.GetTemplate(), "created", err
	}
	if up.GetUnchanged() {
		return up.GetTemplate(), "unchanged", err
	}
	return up.GetTemplate(), "updated", err
}

// checkTemplates asks the notifier to check every template of a file as
// saving it would (validate_only), and reports every one it refuses with
// the fields at fault. An error that is not about a template (the token,
// the service) stops the check at once.
func checkTemplates(ctx context.Context, c notifierv1.NotifierServiceClient, ts []*notifierv1.Template, file string) error {
	var refused []string
	for _, t := range ts {
		_, _, err := putTemplate(ctx, c, t, true)
		name := fmt.Sprintf("template %s (%s)", t.GetKey(), templatefile.ChannelName(t.GetChannel()))
		switch status.Code(err) {
		case codes.OK:
			continue
		case codes.InvalidArgument, codes.AlreadyExists:
			// A notifier of an earlier release, without validate_only, says
			// so as INVALID_ARGUMENT too: that is not this template's fault.
			if !server.UnknownRequestFields(err) {
				refused = append(refused, fmt.Sprintf("%s: %v", name, notifierAPI.fail(err)))
				continue
			}
		}
		return fmt.Errorf("%s: %w; no template of %s saved", name, notifierAPI.fail(err), file)
	}
	if len(refused) > 0 {
		return fmt.Errorf("the notifier refused %d of the %d templates of %s; none saved:\n  %s", len(refused), len(ts), file, strings.Join(refused, "\n  "))
	}
	return nil
}

func templatesPreview(ctx context.Context, env *cliEnv, args []string) error {
	f := newCommandFlags(env, "templates preview", "templates preview KEY [--customer C] [--channel email] [--locale fa-IR] [--time-zone ZONE] [--var name=value]... [--output text|json]")
	ch := channelFlag(f, false)
	customer := f.fs.String("customer", "", "render for this customer: their name, email, locale and time zone (default: a sample customer, first name Sample, last name Customer, no email or phone)")
	locale := f.fs.String("locale", "", "locale (BCP 47, e.g. fa-IR; default: the customer's)")
	zone := f.fs.String("time-zone", "", "IANA time zone for dates (default: the customer's)")
	var vars multiFlag
	f.fs.Var(&vars, "var", "a template variable, name=value (repeatable); money as '12.50 EUR', time as RFC 3339 or a date, coupon as CODE, CODE:20% or 'CODE:5.00 EUR'")
	key, err := f.parseOne(args, "template key")
	if err != nil {
		return err
	}
	req := &notifierv1.PreviewTemplateRequest{Key: key, Channel: *ch, CustomerId: *customer, Locale: *locale, TimeZone: *zone}
	if *customer == "" {
		// The preview API renders for the names it is given: without a
		// customer, names that say they are a sample, rather than a
		// message to nobody ("Hi ,").
		req.FirstName, req.LastName = sampleFirstName, sampleLastName
	}
	chGiven := flagSet(f.fs, "channel")
	return callAndPrint(env.stdout, f, notifierAPI, func(c notifierv1.NotifierServiceClient) (*notifierv1.PreviewTemplateResponse, error) {
		if len(vars) > 0 {
			// Values are typed by the template's declarations, so look it up.
			t, err := c.GetTemplate(ctx, &notifierv1.GetTemplateRequest{Key: key, Channel: *ch})
			if err != nil {
				return nil, templateNotFound(ctx, c, err, key, *ch, 0, chGiven)
			}
			if req.Variables, err = parseTemplateVars(t.GetTemplate(), vars); err != nil {
				return nil, err
			}
		}
		resp, err := c.PreviewTemplate(ctx, req)
		if err != nil {
			return nil, templateNotFound(ctx, c, err, key, *ch, 0, chGiven)
		}
		return resp, nil
	}, func(w io.Writer, resp *notifierv1.PreviewTemplateResponse) error {
		m := resp.GetMessage()
		fmt.Fprintf(w, "# %s (%s) version %d, variant %s, direction %s\n", key, templatefile.ChannelName(*ch), resp.GetVersion(),
			cmp.Or(m.GetLocale(), "default"), m.GetDirection())
		if *customer == "" {
			fmt.Fprintf(w, "# for a SAMPLE customer (first name %s, last name %s, no email or phone): --customer C renders it as C gets it\n", sampleFirstName, sampleLastName)
		}
		for _, part := range []struct{ name, text string }{{"Subject", m.GetSubject()}, {"Text", m.GetText()}, {"HTML", m.GetHtml()}, {"Body", m.GetBody()}} {
			if part.text == "" {
				continue
			}
			if part.name == "Subject" {
				fmt.Fprintf(w, "Subject: %s\n", part.text)
				continue
			}
			fmt.Fprintf(w, "\n--- %s\n%s\n", part.name, strings.TrimRight(part.text, "\n"))
		}
		return nil
	})
}

// The names `templates preview` renders for without --customer.
const sampleFirstName, sampleLastName = "Sample", "Customer"

// parseTemplateVars reads --var name=value by the type the template
// declares for name. A value it cannot read is a usage error, though it
// is found only once the template is known.
func parseTemplateVars(t *notifierv1.Template, vars []string) (map[string]*notifierv1.TemplateValue, error) {
	types := map[string]string{}
	var names []string
	for _, v := range t.GetVariables() {
		types[v.GetName()] = v.GetType()
		names = append(names, v.GetName())
	}
	out := map[string]*notifierv1.TemplateValue{}
	for _, kv := range vars {
		name, val, ok := strings.Cut(kv, "=")
		if !ok || name == "" {
			return nil, usagef("--var %q: want name=value", kv)
		}
		typ, ok := types[name]
		if !ok {
			return nil, usagef("--var %s: template %s declares no such variable (it declares: %s)", name, t.GetKey(), cmp.Or(strings.Join(names, ", "), "none"))
		}
		v, err := parseTemplateValue(typ, val)
		if err != nil {
			return nil, usagef("--var %s (%s): %w", name, typ, err)
		}
		out[name] = v
	}
	return out, nil
}

func parseTemplateValue(typ, s string) (*notifierv1.TemplateValue, error) {
	switch typ {
	case "text":
		return &notifierv1.TemplateValue{Value: &notifierv1.TemplateValue_Text{Text: s}}, nil
	case "integer":
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%q is not an integer", s)
		}
		return &notifierv1.TemplateValue{Value: &notifierv1.TemplateValue_Integer{Integer: n}}, nil
	case "money":
		m, err := parseMoneyArg(s)
		if err != nil {
			return nil, err
		}
		return &notifierv1.TemplateValue{Value: &notifierv1.TemplateValue_Money{Money: m}}, nil
	case "time":
		t, err := time.Parse(time.RFC3339, s)
		if err != nil {
			if t, err = time.Parse(time.DateOnly, s); err != nil {
				return nil, fmt.Errorf("%q: want an RFC 3339 instant or a date (2006-01-02)", s)
			}
		}
		return &notifierv1.TemplateValue{Value: &notifierv1.TemplateValue_Time{Time: timestamppb.New(t)}}, nil
	case "coupon":
		code, discount, _ := strings.Cut(s, ":")
		if code == "" {
			return nil, fmt.Errorf("%q: want CODE, CODE:20%% or CODE:5.00 EUR", s)
		}
		cp := &notifierv1.Coupon{Code: code}
		switch {
		case discount == "":
		case strings.HasSuffix(discount, "%"):
			p, err := strconv.Atoi(strings.TrimSuffix(discount, "%"))
			if err != nil || p < 1 || p > 100 {
				return nil, fmt.Errorf("%q: the percentage must be 1-100", discount)
			}
			cp.Discount = &notifierv1.Coupon_PercentOff{PercentOff: int32(p)}
		default:
			m, err := parseMoneyArg(discount)
			if err != nil {
				return nil, err
			}
			cp.Discount = &notifierv1.Coupon_AmountOff{AmountOff: m}
		}
		return &notifierv1.TemplateValue{Value: &notifierv1.TemplateValue_Coupon{Coupon: cp}}, nil
	}
	return nil, fmt.Errorf("the template declares type %q, which this command cannot read", typ)
}

// parseMoneyArg reads "12.50 EUR" exactly.
func parseMoneyArg(s string) (*eventsv1.Money, error) {
	amount, currency, ok := strings.Cut(strings.TrimSpace(s), " ")
	if !ok {
		return nil, fmt.Errorf("%q: want an amount and an ISO 4217 currency, like '12.50 EUR'", s)
	}
	currency = strings.ToUpper(strings.TrimSpace(currency))
	minor, err := importer.ParseAmount(amount, currency)
	if err != nil {
		return nil, fmt.Errorf("%q: %w", s, err)
	}
	return &eventsv1.Money{AmountMinor: minor, Currency: currency}, nil
}

// runDeliveries is `retain deliveries list|show`.
func runDeliveries(ctx context.Context, env *cliEnv, args []string) error {
	return subcommands(env, "deliveries", deliveriesUsage, args, map[string]func([]string) error{
		"list": func(a []string) error { return deliveriesList(ctx, env, a) },
		"show": func(a []string) error { return deliveriesShow(ctx, env, a) },
	})
}

func deliveriesList(ctx context.Context, env *cliEnv, args []string) error {
	f := newCommandFlags(env, "deliveries list", "deliveries list --customer C | --campaign X [--limit N] [--output text|json]")
	customer := f.fs.String("customer", "", "the deliveries of this customer")
	campaign := f.fs.String("campaign", "", "the deliveries of this campaign")
	limit := valueFlag(f.fs, "limit", "50", "how many deliveries to list, 1-10000", intIn(1, 10000))
	pageToken := f.fs.String("page-token", "", "continue after a previous listing (json output's next_page_token)")
	if err := f.parseNone(args, "deliveries list", ""); err != nil {
		return err
	}
	if (*customer == "") == (*campaign == "") {
		return usagef("deliveries list needs exactly one of --customer and --campaign")
	}
	return callAndPrint(env.stdout, f, notifierAPI, func(c notifierv1.NotifierServiceClient) (*notifierv1.ListDeliveriesResponse, error) {
		ds, next, err := pagesUpTo(*limit, 500, *pageToken, func(size int32, tok string) ([]*notifierv1.Delivery, string, error) {
			resp, err := c.ListDeliveries(ctx, &notifierv1.ListDeliveriesRequest{CustomerId: *customer, CampaignId: *campaign,
				PageSize: size, PageToken: tok})
			return resp.GetDeliveries(), resp.GetNextPageToken(), err
		})
		if err != nil {
			return nil, err
		}
		return &notifierv1.ListDeliveriesResponse{Deliveries: ds, NextPageToken: next}, nil
	}, func(w io.Writer, all *notifierv1.ListDeliveriesResponse) error {
		if len(all.GetDeliveries()) == 0 {
			fmt.Fprintln(w, "no deliveries")
			return nil
		}
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "REQUESTED\tREQUEST ID\tCUSTOMER\tCHANNEL\tCATEGORY\tTEMPLATE\tSTATUS\tREASON")
		for _, d := range all.GetDeliveries() {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", d.GetRequestedAt().AsTime().UTC().Format("2006-01-02 15:04Z"), d.GetRequestId(),
				d.GetCustomerId(), templatefile.ChannelName(d.GetChannel()), categoryWord(d.GetCategory()), d.GetTemplateKey(),
				deliveryStatus(d), cmp.Or(d.GetReason(), "-"))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		if all.GetNextPageToken() != "" {
			fmt.Fprintf(w, "%s --page-token %s\n", moreOfTheSame, all.GetNextPageToken())
		}
		return nil
	})
}

func categoryWord(c notifierv1.Category) string {
	return strings.ToLower(strings.TrimPrefix(c.String(), "CATEGORY_"))
}

// deliveryStatus is the status with its reason code and, while waiting,
// when it is due.
func deliveryStatus(d *notifierv1.Delivery) string {
	s := d.GetStatus()
	if d.GetReasonCode() != "" && s != "sent" {
		s += " (" + d.GetReasonCode() + ")"
	}
	if d.GetDueAt() != nil {
		s += " until " + timeText(d.GetDueAt())
	}
	return s
}

func deliveriesShow(ctx context.Context, env *cliEnv, args []string) error {
	f := newCommandFlags(env, "deliveries show", "deliveries show REQUEST_ID [--output text|json]")
	id, err := f.parseOne(args, "request id")
	if err != nil {
		return err
	}
	return callAndPrint(env.stdout, f, notifierAPI, func(c notifierv1.NotifierServiceClient) (*notifierv1.GetDeliveryResponse, error) {
		resp, err := c.GetDelivery(ctx, &notifierv1.GetDeliveryRequest{RequestId: id})
		return resp, notFoundAs(err, fmt.Sprintf("delivery %q", id))
	}, func(w io.Writer, resp *notifierv1.GetDeliveryResponse) error {
		printDelivery(w, resp.GetDelivery())
		return nil
	})
}

func printDelivery(w io.Writer, d *notifierv1.Delivery) {
	fmt.Fprintf(w, "%s: %s\n", d.GetRequestId(), strings.ToUpper(deliveryStatus(d)))
	if d.GetReason() != "" {
		fmt.Fprintf(w, "  reason     %s\n", d.GetReason())
	}
	fmt.Fprintf(w, "  customer   %s, %s %s, priority %s, rank %d\n", d.GetCustomerId(), categoryWord(d.GetCategory()), templatefile.ChannelName(d.GetChannel()),
		strings.ToLower(strings.TrimPrefix(d.GetPriority().String(), "PRIORITY_")), d.GetRank())
	tpl := d.GetTemplateKey()
	if d.GetTemplateVersion() > 0 {
		tpl += fmt.Sprintf(" v%d, variant %s", d.GetTemplateVersion(), cmp.Or(d.GetLocale(), "default"))
	}
	fmt.Fprintf(w, "  template   %s\n", tpl)
	if o := d.GetOrigin(); o.GetCampaignId() != "" {
		fmt.Fprintf(w, "  campaign   %s v%d, enrollment %s, step %s\n", o.GetCampaignId(), o.GetCampaignVersion(), o.GetEnrollmentId(), o.GetStepId())
	}
	fmt.Fprintf(w, "  requested  %s, updated %s, send attempts: %d\n", timeText(d.GetRequestedAt()), timeText(d.GetUpdatedAt()), d.GetAttempts())
	if d.GetProviderMessageId() != "" {
		fmt.Fprintf(w, "  provider   %s\n", d.GetProviderMessageId())
	}
	fmt.Fprintln(w, "decision trail:")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, x := range d.GetDecisions() {
		why := x.GetReason()
		if code := x.GetReasonCode(); code != x.GetStage() { // a stage's own name says nothing more
			why = strings.TrimSpace(code + " " + why)
		}
		fmt.Fprintf(tw, "  %d\t%s\t%s\t%s\t%s\n", x.GetStep(), timeText(x.GetDecidedAt()), x.GetStage(), x.GetVerdict(), why)
	}
	_ = tw.Flush()
}

// runPreferences is `retain preferences get|set`.
func runPreferences(ctx context.Context, env *cliEnv, args []string) error {
	return subcommands(env, "preferences", preferencesUsage, args, map[string]func([]string) error{
		"get": func(a []string) error { return preferencesGet(ctx, env, a) },
		"set": func(a []string) error { return preferencesSet(ctx, env, a) },
	})
}

func preferencesGet(ctx context.Context, env *cliEnv, args []string) error {
	f := newCommandFlags(env, "preferences get", "preferences get CUSTOMER [--output text|json]")
	customer, err := f.parseOne(args, "customer id")
	if err != nil {
		return err
	}
	return callAndPrint(env.stdout, f, notifierAPI, func(c notifierv1.NotifierServiceClient) (*notifierv1.GetPreferencesResponse, error) {
		return c.GetPreferences(ctx, &notifierv1.GetPreferencesRequest{CustomerId: customer})
	}, func(w io.Writer, resp *notifierv1.GetPreferencesResponse) error {
		if nothingOnFile(resp) {
			fmt.Fprintf(w, "%s: unknown to the notifier (no details or consent from customer.updated events, no preference set); these defaults would apply:\n", customer)
			printPreferences(w, resp.GetPreferences())
			return nil
		}
		onFile := func(has bool, what string) string {
			if has {
				return what + " on file"
			}
			return "no " + what
		}
		fmt.Fprintf(w, "%s: locale %s, time zone %s; %s, %s\n", customer, cmp.Or(resp.GetLocale(), "unknown"),
			cmp.Or(resp.GetTimeZone(), "unknown (the notifier's default)"), onFile(resp.GetHasEmail(), "email"), onFile(resp.GetHasPhone(), "phone"))
		printPreferences(w, resp.GetPreferences())
		return nil
	})
}

// nothingOnFile reports whether the notifier answered with nothing but its
// defaults: it answers so for any customer id, so this is a customer it has
// never heard of (or one whose customer.updated gave only a name, which the
// answer does not carry).
func nothingOnFile(resp *notifierv1.GetPreferencesResponse) bool {
	if resp.GetLocale() != "" || resp.GetTimeZone() != "" || resp.GetHasEmail() || resp.GetHasPhone() {
		return false
	}
	for _, p := range resp.GetPreferences() {
		if p.GetSource() != "default" {
			return false
		}
	}
	return true
}

func printPreferences(w io.Writer, ps []*notifierv1.ChannelPreference) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CHANNEL\tCATEGORY\tRECEIVES\tSOURCE\tSINCE")
	for _, p := range ps {
		yes, since := "no", "-"
		if p.GetSubscribed() {
			yes = "yes"
		}
		if p.GetUpdatedAt() != nil {
			since = p.GetUpdatedAt().AsTime().UTC().Format("2006-01-02 15:04Z")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", templatefile.ChannelName(p.GetChannel()), categoryWord(p.GetCategory()), yes, p.GetSource(), since)
	}
	_ = tw.Flush()
}

// preferenceFlags are the choices `preferences set` can make, by flag name.
var preferenceFlags = []struct {
	name     string
	channel  notifierv1.Channel
	category notifierv1.Category
}{
	{"email-marketing", notifierv1.Channel_CHANNEL_EMAIL, notifierv1.Category_CATEGORY_MARKETING},
	{"email-transactional", notifierv1.Channel_CHANNEL_EMAIL, notifierv1.Category_CATEGORY_TRANSACTIONAL},
	{"sms-marketing", notifierv1.Channel_CHANNEL_SMS, notifierv1.Category_CATEGORY_MARKETING},
	{"sms-transactional", notifierv1.Channel_CHANNEL_SMS, notifierv1.Category_CATEGORY_TRANSACTIONAL},
}

func preferencesSet(ctx context.Context, env *cliEnv, args []string) error {
	f := newCommandFlags(env, "preferences set", "preferences set CUSTOMER --email-marketing=false [--email-transactional=B] [--sms-marketing=B] [--sms-transactional=B] [--output text|json]")
	values := make([]*bool, len(preferenceFlags))
	for i, p := range preferenceFlags {
		values[i] = f.fs.Bool(p.name, false, "whether the customer receives "+strings.Replace(p.name, "-", " ", 1)+" messages")
	}
	customer, err := f.parseOne(args, "customer id")
	if err != nil {
		return err
	}
	// Only the flags given change anything: an absent flag keeps the
	// customer's current choice.
	given := map[string]bool{}
	f.fs.Visit(func(fl *flag.Flag) { given[fl.Name] = true })
	req := &notifierv1.SetPreferencesRequest{CustomerId: customer}
	for i, p := range preferenceFlags {
		if given[p.name] {
			req.Preferences = append(req.Preferences, &notifierv1.ChannelPreference{Channel: p.channel, Category: p.category, Subscribed: *values[i]})
		}
	}
	if len(req.Preferences) == 0 {
		names := make([]string, len(preferenceFlags))
		for i, p := range preferenceFlags {
			names[i] = "--" + p.name
		}
		sort.Strings(names)
		return usagef("preferences set needs at least one of %s (=true or =false)", strings.Join(names, ", "))
	}
	return callAndPrint(env.stdout, f, notifierAPI, func(c notifierv1.NotifierServiceClient) (*notifierv1.SetPreferencesResponse, error) {
		return c.SetPreferences(ctx, req)
	}, func(w io.Writer, resp *notifierv1.SetPreferencesResponse) error {
		fmt.Fprintf(w, "%s: preferences saved\n", customer)
		printPreferences(w, resp.GetPreferences())
		return nil
	})
}
