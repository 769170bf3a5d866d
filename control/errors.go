package control

import (
	"context"
	"errors"
	"net/http"
)

// Error codes: the "code" member of every error body. They are stable API;
// ctl and scripts match on them, never on the message.
const (
	CodeBadRequest       = "bad_request"        // 400
	CodeForbidden        = "forbidden"          // 403
	CodeNotFound         = "not_found"          // 404 unknown path
	CodeNoSuchWorker     = "no_such_worker"     // 404
	CodeMethodNotAllowed = "method_not_allowed" // 405
	CodeBusy             = "busy"               // 409
	CodeBodyTooLarge     = "body_too_large"     // 413
	CodeConfigInvalid    = "config_invalid"     // 422
	CodeInternal         = "internal"           // 500
	CodeNotImplemented   = "not_implemented"    // 501
	CodeTimeout          = "timeout"            // 504
	CodeCanceled         = "canceled"           // 504: the request's context ended
)

// ErrorBody is the JSON body of every error answer:
// {"error": "...", "code": "snake_case", "details": [...]}.
type ErrorBody struct {
	Error   string          `json:"error"`
	Code    string          `json:"code"`
	Details []ConfigProblem `json:"details,omitempty"`
}

// APIError is an error answer: the server turns any handler error into one
// (see errorFor), and the Client returns one for every non-2xx answer.
//
// On the client side Err is the sentinel the code stands for (ErrBusy,
// ErrNoSuchWorker, ErrNotImplemented, ErrBadRequest, a *ConfigError with
// Details, context.DeadlineExceeded), so errors.Is and errors.As work the
// same on both sides of the socket.
type APIError struct {
	Status  int             // HTTP status
	Code    string          // one of the Code constants
	Message string          // human-readable
	Details []ConfigProblem // for config_invalid
	Err     error           // the cause; not sent
}

func (e *APIError) Error() string {
	if e.Message != "" {
		return e.Message
	}
	return http.StatusText(e.Status)
}

func (e *APIError) Unwrap() error { return e.Err }

// errorFor maps a handler or Controller error to its answer.
func errorFor(err error) *APIError {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae
	}
	var ce *ConfigError
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &ce):
		return &APIError{Status: http.StatusUnprocessableEntity, Code: CodeConfigInvalid, Message: err.Error(), Details: ce.Problems, Err: err}
	case errors.As(err, &mbe):
		return &APIError{Status: http.StatusRequestEntityTooLarge, Code: CodeBodyTooLarge, Message: "request body larger than 1 MiB", Err: err}
	case errors.Is(err, ErrBadRequest):
		return &APIError{Status: http.StatusBadRequest, Code: CodeBadRequest, Message: err.Error(), Err: err}
	case errors.Is(err, ErrNoSuchWorker):
		return &APIError{Status: http.StatusNotFound, Code: CodeNoSuchWorker, Message: err.Error(), Err: err}
	case errors.Is(err, ErrBusy):
		return &APIError{Status: http.StatusConflict, Code: CodeBusy, Message: err.Error(), Err: err}
	case errors.Is(err, ErrNotImplemented):
		return &APIError{Status: http.StatusNotImplemented, Code: CodeNotImplemented, Message: err.Error(), Err: err}
	case errors.Is(err, context.DeadlineExceeded):
		return &APIError{Status: http.StatusGatewayTimeout, Code: CodeTimeout, Message: err.Error(), Err: err}
	case errors.Is(err, context.Canceled):
		return &APIError{Status: http.StatusGatewayTimeout, Code: CodeCanceled, Message: err.Error(), Err: err}
	}
	return &APIError{Status: http.StatusInternalServerError, Code: CodeInternal, Message: err.Error(), Err: err}
}

// sentinelFor is errorFor's inverse, for the client.
func sentinelFor(code string, details []ConfigProblem) error {
	switch code {
	case CodeBadRequest, CodeBodyTooLarge:
		return ErrBadRequest
	case CodeNoSuchWorker:
		return ErrNoSuchWorker
	case CodeBusy:
		return ErrBusy
	case CodeNotImplemented:
		return ErrNotImplemented
	case CodeConfigInvalid:
		return &ConfigError{Problems: details}
	case CodeTimeout:
		return context.DeadlineExceeded
	}
	return nil
}

// badRequest is a 400 with msg.
func badRequest(msg string) *APIError {
	return &APIError{Status: http.StatusBadRequest, Code: CodeBadRequest, Message: msg, Err: ErrBadRequest}
}
