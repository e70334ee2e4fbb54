package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"

	"github.com/retainhq/retain/cmd/retain/internal/importer"
)

// rowReader is what both importer readers offer.
type rowReader interface {
	Next() bool
	Row() importer.Row
	Err() error
}

func runImport(ctx context.Context, env *cliEnv, args []string) error {
	return importFiles(ctx, env, "import", args)
}

// runPublish is `retain publish FILE...`: import ndjson under its own name.
func runPublish(ctx context.Context, env *cliEnv, args []string) error {
	return importFiles(ctx, env, "publish", args)
}

// importKinds are the KINDs `retain import` accepts: ndjson and the CSV
// kinds.
func importKinds() []string {
	kinds := []string{"ndjson"}
	for _, k := range importer.Kinds() {
		kinds = append(kinds, string(k))
	}
	return kinds
}

// importFiles is `retain import KIND FILE...` and, with cmd "publish",
// `retain publish FILE...`, which reads NDJSON and has no CSV flags.
func importFiles(ctx context.Context, env *cliEnv, cmd string, args []string) error {
	publish := cmd == "publish"
	usageLine := "import KIND FILE... [flags]   (KIND: " + strings.Join(importKinds(), ", ") + "; FILE '-' is stdin)"
	if publish {
		usageLine = "publish FILE... [flags]   (NDJSON, one protojson Event per line, as import ndjson; FILE '-' is stdin)"
	}
	fs := newFlags(env, cmd, usageLine)
	ep := addEndpointFlags(fs, env)
	var maps multiFlag
	currency, timeFormat, surveyKind := new(string), new(string), new(string)
	if !publish {
		fs.Var(&maps, "map", "`FIELD=COLUMN` pairs, comma-separated (repeatable), e.g. order_id=InvoiceNo,customer_id=customer,placed_at=at,total=total")
		currency = fs.String("currency", "", "ISO-4217 currency of money columns without a currency column")
		timeFormat = fs.String("time-format", "", "Go time layout of date-time columns (default RFC 3339), e.g. \"2006-01-02 15:04:05\"")
		surveyKind = fs.String("survey-kind", "", "nps or csat, for survey files without a kind column")
	}
	quiet := fs.Bool("quiet", false, "no progress line")
	maxErrors := fs.Int("show-rejected", 20, "how many rejected rows to list in the summary")
	// Flags may follow the positional arguments, as in the README's example.
	pos, flagArgs := splitPositional(args)
	if err := parseFlags(fs, flagArgs); err != nil {
		return err
	}
	pos = append(pos, fs.Args()...)
	if publish {
		if len(pos) < 1 {
			fs.Usage()
			return usagef("publish needs at least one FILE ('-' for stdin)")
		}
		pos = append([]string{"ndjson"}, pos...)
	}
	if len(pos) < 2 {
		fs.Usage()
		return usagef("import needs a KIND and at least one FILE")
	}
	kind, files := pos[0], pos[1:]
	if kind != "ndjson" {
		if _, err := importer.ParseKind(kind); err != nil {
			return usagef("unknown KIND %q: want %s", kind, strings.Join(importKinds(), ", "))
		}
	}
	mapping, err := importer.ParseMapping(maps...)
	if err != nil {
		return usageError{err}
	}

	var progress io.Writer = env.stderr
	if *quiet {
		progress = nil
	}
	total := &sendSummary{}
	// Dialed once the first file's header has been checked against the
	// flags: a missing --currency or --map is a usage error whether or not
	// Retain runs.
	var conn *grpc.ClientConn
	for _, name := range files {
		f, closeFn, err := openInput(env, name)
		if err != nil {
			return err
		}
		var rr rowReader
		if kind == "ndjson" {
			rr = importer.NewNDJSONReader(f, time.Now())
		} else {
			k, err := importer.ParseKind(kind)
			if err != nil {
				closeFn()
				return err
			}
			cr, err := importer.NewCSVReader(f, importer.CSVOptions{Kind: k, Mapping: mapping, Currency: *currency, TimeFormat: *timeFormat, SurveyKind: *surveyKind})
			if err != nil {
				closeFn()
				err = fmt.Errorf("%s: %w", name, err)
				if errors.As(err, new(*importer.OptionsError)) {
					return usageError{err}
				}
				return err
			}
			rr = cr
		}
		if conn == nil {
			if conn, err = ep.dial(); err != nil {
				closeFn()
				return err
			}
			defer conn.Close()
		}
		fmt.Fprintf(env.stderr, "importing %s (%s)\n", name, kind)
		sum, err := newSender(conn, progress).send(ctx, rowSource(rr))
		closeFn()
		if sum != nil {
			printSummary(env.stdout, sum, *maxErrors)
			total.read += sum.read
			total.accepted += sum.accepted
			total.duplicates += sum.duplicates
			total.rejected = append(total.rejected, sum.rejected...)
		}
		if errors.Is(err, errRefusedTooLarge) {
			// The same command would send the same requests, refused
			// again: the hint would not help.
			return fmt.Errorf("%s: %w", name, err)
		}
		if err != nil {
			return fmt.Errorf("%s: %w\n%s", name, err, rerunHint)
		}
	}
	if total.accepted > 0 {
		fmt.Fprintln(env.stdout, appliedLater)
	}
	if len(total.rejected) > 0 {
		return fmt.Errorf("%d rows rejected (listed above); the other rows were imported", len(total.rejected))
	}
	return nil
}

// rerunHint is the next step after an import that stopped part way. Each
// event's id comes from its file (written there, or derived from the row's
// key or content), so a run of the same command sends the same ids again,
// and ingest answers those it already stored as duplicates: nothing is
// stored twice, whichever requests of the failed run got in.
const rerunHint = "running the same command again is safe: events already stored are answered as duplicates, the others are imported"

// appliedLater follows a run that stored events: accepted is on the
// stream, not yet counted, and a figure read right after a large import
// is partial without saying so.
const appliedLater = "accepted events are applied by the services in the background, within seconds: figures read at once may not count them all yet"

// rowSource adapts an importer reader to the sender.
func rowSource(rr rowReader) func() (sourceEvent, error) {
	return func() (sourceEvent, error) {
		if !rr.Next() {
			if err := rr.Err(); err != nil {
				return sourceEvent{}, err
			}
			return sourceEvent{}, io.EOF
		}
		row := rr.Row()
		return sourceEvent{line: row.Line, event: row.Event, err: row.Err}, nil
	}
}

func openInput(env *cliEnv, name string) (io.Reader, func(), error) {
	if name == "-" {
		return env.stdin, func() {}, nil
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, nil, err
	}
	return f, func() { f.Close() }, nil
}

// splitPositional moves leading arguments that are not flags out of args so
// that `retain import orders FILE --map ...` works with the flag package,
// which stops at the first positional argument.
func splitPositional(args []string) (pos, rest []string) {
	for i, a := range args {
		if strings.HasPrefix(a, "-") && a != "-" {
			return pos, args[i:]
		}
		pos = append(pos, a)
	}
	return pos, nil
}

// multiFlag is a repeatable string flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }
