package main

import (
	"cmp"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/retainhq/retain/platform/auth"
	"github.com/retainhq/retain/platform/server"
)

// stateDir is where `retain dev` keeps its data and tells the other commands
// how to reach it.
const stateDir = ".retain"

// devState is written by `retain dev` to .retain/dev.json so that commands run
// from the same directory find the running stack without flags.
type devState struct {
	GRPCAddr string `json:"grpc_addr"`
	HTTPAddr string `json:"http_addr"`
	OpsAddr  string `json:"ops_addr"`
	Token    string `json:"token"`
	NATSURL  string `json:"nats_url"`
	PID      int    `json:"pid"`
}

// devStateFile is the state file's name in the state directory.
const devStateFile = "dev.json"

func devStatePath(dir string) string { return filepath.Join(dir, devStateFile) }

// findStateFile looks for name in the state directory of the working
// directory or of the nearest directory above it that has one, as git
// finds .git: commands run from a subdirectory of where `retain dev` runs
// still find it. Without one, the path it would have in the working
// directory.
func findStateFile(name string) string {
	if dir, err := os.Getwd(); err == nil {
		for {
			p := filepath.Join(dir, stateDir, name)
			if _, err := os.Stat(p); err == nil {
				return p
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				break
			}
			dir = parent
		}
	}
	return filepath.Join(stateDir, name)
}

func writeDevState(dir string, s devState) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	// The file holds a token: readable by its owner only.
	return os.WriteFile(devStatePath(dir), b, 0o600)
}

func readDevState(dir string) (devState, error) {
	var s devState
	b, err := os.ReadFile(devStatePath(dir))
	if err != nil {
		return s, err
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("%s: %w", devStatePath(dir), err)
	}
	return s, nil
}

// endpoint is where a command sends its calls.
type endpoint struct {
	addr, token string
	envToken    string // RETAIN_TOKEN, used when --token is not given
	tls         server.ClientTLS
	envErr      error // a RETAIN_TLS that is not a boolean, reported by resolve
}

// addEndpointFlags registers --addr (RETAIN_ADDR by default), --token
// (RETAIN_TOKEN, read by resolve) and the TLS flags (RETAIN_TLS,
// RETAIN_TLS_CA and RETAIN_TLS_SERVER_NAME by default).
func addEndpointFlags(fs *flag.FlagSet, env *cliEnv) *endpoint {
	e := &endpoint{envToken: env.getenv("RETAIN_TOKEN")}
	// A back-quoted word in a usage text is the flag's placeholder in -h:
	// only ADDR, TOKEN, FILE and NAME are quoted so.
	fs.StringVar(&e.addr, "addr", env.getenv("RETAIN_ADDR"), "`ADDR` (host:port) of Retain's gRPC API (env RETAIN_ADDR; default: the 'retain dev' running from this directory or one above it)")
	// RETAIN_TOKEN is applied in resolve, not as the flag's default: -h
	// prints defaults, and a token must not land in terminal or CI logs.
	fs.StringVar(&e.token, "token", "", "API `TOKEN` (default: $RETAIN_TOKEN, else the dev token of 'retain dev')")
	useTLS := false
	if v := env.getenv("RETAIN_TLS"); v != "" {
		var err error
		if useTLS, err = strconv.ParseBool(v); err != nil {
			e.envErr = usageError{fmt.Errorf("RETAIN_TLS: want true or false, got %q", v)}
		}
	}
	fs.BoolVar(&e.tls.Enabled, "tls", useTLS, "connect over TLS, verifying the server with the system's roots (env RETAIN_TLS; --tls-ca and --tls-server-name imply it)")
	fs.StringVar(&e.tls.CAFile, "tls-ca", env.getenv("RETAIN_TLS_CA"), "CA certificate(s), a PEM `FILE`, verifying the server instead of the system's roots; implies --tls (env RETAIN_TLS_CA)")
	fs.StringVar(&e.tls.ServerName, "tls-server-name", env.getenv("RETAIN_TLS_SERVER_NAME"), "`NAME` the server's certificate is for when it is not the host of --addr, as through a port-forward to 127.0.0.1; implies --tls (env RETAIN_TLS_SERVER_NAME)")
	return e
}

// resolve fills what flags left empty from the dev stack's state file.
func (e *endpoint) resolve() error {
	if e.envErr != nil {
		return e.envErr
	}
	if e.token == "" {
		e.token = e.envToken
	}
	if e.addr != "" && e.token != "" {
		return nil
	}
	s, err := readDevState(filepath.Dir(findStateFile(devStateFile)))
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			return err
		}
		// Without a dev stack here, name what is missing.
		switch {
		case e.addr != "":
			return fmt.Errorf("no API token for %s: pass --token or set RETAIN_TOKEN (retain tokens issue makes one)", e.addr)
		case e.token != "":
			return errors.New("no address to send the token to: pass --addr or set RETAIN_ADDR (host:port of Retain's gRPC API)")
		}
		return errors.New("no Retain to talk to: start `retain dev` in this directory (or one above it), or pass --addr and --token (RETAIN_ADDR, RETAIN_TOKEN)")
	}
	if e.addr == "" {
		e.addr = s.GRPCAddr
	}
	if e.token == "" {
		e.token = s.Token
	}
	return nil
}

// commandFlags are the flags every API command shares: --addr, --token and
// --output.
type commandFlags struct {
	fs     *flag.FlagSet
	ep     *endpoint
	output *string
}

func newCommandFlags(env *cliEnv, name, usageLine string) commandFlags {
	fs := newFlags(env, name, usageLine)
	return commandFlags{fs: fs, ep: addEndpointFlags(fs, env), output: fs.String("output", "text", "text or json (the gRPC response as protojson)")}
}

// parse parses args (positional arguments may come first) and returns the
// positional ones.
func (f commandFlags) parse(args []string) ([]string, error) {
	pos, rest := splitPositional(args)
	if err := parseFlags(f.fs, rest); err != nil {
		return nil, err
	}
	pos = append(pos, f.fs.Args()...)
	if *f.output == "table" { // what `retain metrics` called its text
		*f.output = "text"
	}
	if *f.output != "text" && *f.output != "json" {
		return nil, usageError{fmt.Errorf("--output %q: must be text (or table) or json", *f.output)}
	}
	return pos, nil
}

// parseOne is parse for a command that takes exactly one positional
// argument, what (named in the error when there is not one).
func (f commandFlags) parseOne(args []string, what string) (string, error) {
	pos, err := f.parse(args)
	if err != nil {
		return "", err
	}
	arg, err := oneArg(pos, what)
	hint := boolValueHint(f.fs, args)
	switch {
	case err != nil && hint != "":
		return "", usageError{fmt.Errorf("%w; %s", err, hint)}
	case err == nil && hint != "" && (strings.EqualFold(arg, "true") || strings.EqualFold(arg, "false")):
		// `preferences set --email-marketing false`: the one argument
		// is the flag's value, not a customer, and the flag was read as
		// true, the opposite of what was meant.
		return "", usageError{fmt.Errorf("want a %s, got %q; %s", what, arg, hint)}
	}
	return arg, err
}

// parseNone is parse for a command that takes no positional argument;
// hint says what an argument may have been meant as (see noArgs).
func (f commandFlags) parseNone(args []string, command, hint string) error {
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	return noArgs(pos, command, cmp.Or(hint, boolValueHint(f.fs, args)))
}

// boolValueHint explains an argument like the false of
// `--email-marketing false`: a boolean flag takes its value after "=", so
// the flag package reads false as one more positional argument.
func boolValueHint(fs *flag.FlagSet, args []string) string {
	for i := 1; i < len(args); i++ {
		if _, err := strconv.ParseBool(args[i]); err != nil {
			continue
		}
		name := strings.TrimLeft(args[i-1], "-")
		if !strings.HasPrefix(args[i-1], "-") || name == "" || strings.Contains(name, "=") {
			continue
		}
		if fl := fs.Lookup(name); fl != nil {
			if b, ok := fl.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
				return fmt.Sprintf("%q after --%s is not its value: use --%s=%s", args[i], name, name, args[i])
			}
		}
	}
	return ""
}

// clientOf dials Retain and wraps the connection in a service's client;
// done closes the connection.
func clientOf[C any](ep *endpoint, newClient func(grpc.ClientConnInterface) C) (c C, done func(), err error) {
	conn, err := ep.dial()
	if err != nil {
		return c, nil, err
	}
	return newClient(conn), func() { conn.Close() }, nil
}

// serviceAPI is one of Retain's gRPC services as the commands see it: how
// to wrap a connection in its client, and what callError names when a call
// to it fails (the service, and the scopes a token needs for it).
type serviceAPI[C any] struct {
	newClient func(grpc.ClientConnInterface) C
	name      string
	scopes    string
}

// fail turns an error of a call to the service into a message for people.
func (s serviceAPI[C]) fail(err error) error { return callError(err, s.name, s.scopes) }

// callAndPrint is the body most API commands share once their flags are
// read: dial, make the call, explain its error, then print the response as
// protojson for --output json or with text otherwise. It is a function, not
// a method of commandFlags, because Go methods take no type parameters.
//
// call may make more than one request (a fallback, a lookup, pages). Its
// error goes through callError, which leaves an error that is not a gRPC
// status unchanged, so call may also return a message of its own.
func callAndPrint[C any, R proto.Message](w io.Writer, f commandFlags, api serviceAPI[C], call func(C) (R, error), text func(io.Writer, R) error) error {
	c, done, err := clientOf(f.ep, api.newClient)
	if err != nil {
		return err
	}
	defer done()
	resp, err := call(c)
	if err != nil {
		return api.fail(err)
	}
	if *f.output == "json" {
		return printJSON(w, resp)
	}
	return text(w, resp)
}

// pagesUpTo follows a listing's next_page_token from token until it has
// limit items or the listing ends, asking each page for no more than is
// still wanted (and no more than maxPage, the service's page size limit).
// It always makes the first request, so token "" starts at the beginning;
// next is where a later --page-token continues ("" at the end).
func pagesUpTo[T any](limit, maxPage int, token string, fetch func(pageSize int32, token string) ([]T, string, error)) (items []T, next string, err error) {
	for first := true; first || (token != "" && len(items) < limit); first = false {
		page, tok, err := fetch(int32(min(limit-len(items), maxPage)), token)
		if err != nil {
			return nil, "", err
		}
		items = append(items, page...)
		token = tok
	}
	return items, token, nil
}

// serverMaxMessageBytes is the largest request Retain's gRPC API takes:
// grpc-go's default receive limit, which platform/server keeps (it sets no
// MaxRecvMsgSize).
const serverMaxMessageBytes = 4 << 20

// dial connects to Retain's gRPC API with the token as bearer credentials.
// A request larger than the server takes is refused here, before it is
// sent. Answers have no limit: they are Retain's own (a PublishBatch answer
// grows with the problems of the events sent), and a limit would make a
// request the server took fail as "larger than max", as if it had been
// refused unread.
func (e *endpoint) dial() (*grpc.ClientConn, error) {
	if err := e.resolve(); err != nil {
		return nil, err
	}
	creds, err := e.tls.TransportCredentials()
	if err != nil {
		return nil, fmt.Errorf("--tls-ca (RETAIN_TLS_CA): %w", err)
	}
	conn, err := grpc.NewClient(e.addr,
		grpc.WithTransportCredentials(creds),
		grpc.WithPerRPCCredentials(auth.BearerCredentials{Token: e.token}),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(serverMaxMessageBytes), grpc.MaxCallRecvMsgSize(math.MaxInt32)),
	)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", e.addr, err)
	}
	return conn, nil
}
