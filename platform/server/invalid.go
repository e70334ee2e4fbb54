package server

import (
	"fmt"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"
)

// FieldViolation is one bad field of a request.
type FieldViolation struct {
	Field       string
	Description string
}

// InvalidArgument is the INVALID_ARGUMENT every API answers for bad input:
// each violation as a google.rpc.BadRequest detail (for programs), and all of
// them in the message (for people and for clients that print only that).
func InvalidArgument(vs ...FieldViolation) error {
	return invalidArgument(nil, vs...)
}

// errorDomain is the google.rpc.ErrorInfo domain of Retain's errors.
const errorDomain = "retain"

// InvalidRequest begins every INVALID_ARGUMENT's message, before the
// violations: the CLI words every refusal so, once.
const InvalidRequest = "invalid request: "

// invalidArgument is InvalidArgument with info, when not nil, as a
// google.rpc.ErrorInfo detail too: a reason a client can act on.
func invalidArgument(info *errdetails.ErrorInfo, vs ...FieldViolation) error {
	br := &errdetails.BadRequest{}
	parts := make([]string, len(vs))
	for i, v := range vs {
		br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{Field: v.Field, Description: v.Description})
		parts[i] = v.Field + ": " + v.Description
		if strings.HasPrefix(v.Description, v.Field+":") || strings.HasPrefix(v.Description, v.Field+" ") {
			// Domain messages often name the field already.
			parts[i] = v.Description
		}
	}
	msg := InvalidRequest + strings.Join(parts, "; ")
	details := []protoadapt.MessageV1{br}
	if info != nil {
		details = append(details, info)
	}
	st, err := status.New(codes.InvalidArgument, msg).WithDetails(details...)
	if err != nil {
		return status.Error(codes.InvalidArgument, msg)
	}
	return st.Err()
}

// Violations reads back the field violations of an InvalidArgument, in
// order, for clients and tests; none for any other error.
func Violations(err error) []FieldViolation {
	var vs []FieldViolation
	for _, d := range status.Convert(err).Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				vs = append(vs, FieldViolation{Field: v.GetField(), Description: v.GetDescription()})
			}
		}
	}
	return vs
}

// PageSize reads a list request's page_size: 0 asks for def, and anything
// outside 0-max is a violation of the field.
func PageSize(n int32, def, max int) (int, *FieldViolation) {
	switch {
	case n < 0 || int(n) > max:
		return 0, &FieldViolation{Field: "page_size", Description: fmt.Sprintf("%d: must be 0-%d (0: %d)", n, max, def)}
	case n == 0:
		return def, nil
	}
	return int(n), nil
}
