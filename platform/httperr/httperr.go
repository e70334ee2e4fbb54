// Package httperr writes the error body of Retain's public HTTP API. Every
// handler and middleware in front of it (auth, the host's unrouted paths,
// ingest) answers with the one shape, {"error":{"code","message"}}, code in
// snake_case, so clients parse a single form whoever refused.
package httperr

import (
	"encoding/json"
	"net/http"
)

type body struct {
	Error detail `json:"error"`
}

type detail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Write answers status with code and message. Errors are not cached.
func Write(w http.ResponseWriter, status int, code, message string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	// The client may be gone; there is nobody to tell about a failed write.
	_ = json.NewEncoder(w).Encode(body{Error: detail{Code: code, Message: message}})
}
