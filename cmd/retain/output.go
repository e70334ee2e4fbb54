package main

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/retainhq/retain/platform/currency"
	"github.com/retainhq/retain/platform/server"
)

// printJSON prints a gRPC response as protojson: what --output json means
// for every query command.
func printJSON(w io.Writer, m proto.Message) error {
	b, err := protojson.MarshalOptions{Multiline: true, EmitUnpopulated: true}.Marshal(m)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(w, string(b))
	return err
}

// callError turns a gRPC status into a plain message for people: the code
// in words (an INVALID_ARGUMENT as "invalid request") and the service's message (which names the field at fault), a
// hint about the token for credential errors, and what it means when the
// service is not running there at all.
func callError(err error, service, scopes string) error {
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	switch st.Code() {
	case codes.Unauthenticated, codes.PermissionDenied:
		return fmt.Errorf("%s: %s (check --token / RETAIN_TOKEN: this command needs the scope %s)", codeWords(st.Code().String()), st.Message(), scopes)
	case codes.Unimplemented:
		// grpc-go words a method the server's service lacks "unknown
		// method": a service of an earlier release than this command.
		if strings.Contains(st.Message(), "unknown method") {
			return fmt.Errorf("the %s service there does not have this call (%s): it runs an earlier release than this command; upgrade it", service, st.Message())
		}
		return errors.New("this Retain does not run the " + service + " service")
	case codes.InvalidArgument:
		// platform/server words every refusal "invalid request: FIELD:
		// ..." for clients that print only the message; the code's own
		// words before it would say it twice.
		msg := strings.TrimPrefix(st.Message(), server.InvalidRequest)
		// A field this command sent that the service does not have: the
		// command is of a later release (decision 0043).
		if server.UnknownRequestFields(err) {
			return fmt.Errorf("the %s service there runs an earlier release than this command, which sent what it does not know: %s", service, msg)
		}
		return errors.New(server.InvalidRequest + cmp.Or(strings.TrimSpace(msg), "the service gave no reason"))
	case codes.Unavailable:
		// gRPC words a TLS mismatch as a transport failure; say which
		// side of it this is (RETAIN_TLS_* set the same as the flags).
		switch msg := st.Message(); {
		case strings.Contains(msg, "error reading server preface"), strings.Contains(msg, "connection closed before server preface"):
			return fmt.Errorf("unavailable: %s (if the server serves TLS, pass --tls, or --tls-ca FILE for a private CA)", msg)
		case strings.Contains(msg, "first record does not look like a TLS handshake"):
			return fmt.Errorf("unavailable: %s (the server does not serve TLS: drop --tls, --tls-ca and --tls-server-name)", msg)
		}
	}
	// The services' messages often say what the code says themselves
	// (`campaign "x": not found`, `... already exists`): say it once.
	words := codeWords(st.Code().String())
	if msg := strings.TrimSpace(st.Message()); msg == "" || strings.Contains(strings.ToLower(msg), words) {
		return errors.New(cmp.Or(msg, words))
	}
	return fmt.Errorf("%s: %s", words, st.Message())
}

// timeText is an instant to the second, in UTC: how the notifier and
// campaign commands print when a hold ends and a delivery's trail.
func timeText(t *timestamppb.Timestamp) string {
	return t.AsTime().UTC().Format("2006-01-02 15:04:05Z")
}

// moreOfTheSame leads a listing's next-page flag: the service refuses a
// page token with another request than the one that returned it, so the
// next page is asked for with the same filters (an rfm without --at is
// scored as of the first page's instant all through).
const moreOfTheSame = "more, with the same command and flags:"

// notFoundAs names what a command looked up when the service's NotFound
// says no more than "not found": `no delivery "x"`. Other errors pass
// unchanged (and a plain error passes callError unchanged).
func notFoundAs(err error, what string) error {
	if st, ok := status.FromError(err); ok && st.Code() == codes.NotFound {
		if msg := strings.TrimSpace(st.Message()); msg == "" || strings.EqualFold(msg, "not found") {
			return errors.New("no " + what)
		}
	}
	return err
}

// codeWords turns a code name like InvalidArgument into "invalid argument".
func codeWords(code string) string {
	var b strings.Builder
	for i, r := range code {
		if i > 0 && r >= 'A' && r <= 'Z' {
			b.WriteByte(' ')
		}
		b.WriteRune(r)
	}
	return strings.ToLower(b.String())
}

// moneyText renders minor units in major units with thousands separators,
// e.g. 1234567 GBP -> "12,345.67" (with the code when withCode). Exact: no
// floats between the integer and the text.
func moneyText(minor int64, code string, withCode bool) string {
	s := currency.Decimal(minor, code)
	neg := strings.HasPrefix(s, "-")
	intPart, frac, _ := strings.Cut(strings.TrimPrefix(s, "-"), ".")
	var b strings.Builder
	for i, c := range intPart {
		if i > 0 && (len(intPart)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	out := b.String()
	if frac != "" {
		out += "." + frac
	}
	if neg {
		out = "-" + out
	}
	if withCode && code != "" {
		out += " " + code
	}
	return out
}
