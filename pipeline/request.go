package pipeline

import (
	"context"
	"net/http"
)

type ctxKey int

const (
	scriptNameKey ctxKey = iota + 1
	requestIDKey
)

// ScriptName returns the mount prefix a composite (urlmap) moved from the
// request path into the request's script name: WSGI's SCRIPT_NAME. The
// request's URL.Path is then WSGI's PATH_INFO. Empty at the root.
func ScriptName(r *http.Request) string {
	s, _ := r.Context().Value(scriptNameKey).(string)
	return s
}

// WithScriptName returns a shallow copy of r whose script name is
// scriptName. It does not change r.URL.
func WithScriptName(r *http.Request, scriptName string) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), scriptNameKey, scriptName))
}

// RequestID returns the request id the request_id filter assigned, or "".
func RequestID(r *http.Request) string {
	s, _ := r.Context().Value(requestIDKey).(string)
	return s
}

// WithRequestID returns a shallow copy of r carrying id as its request id.
func WithRequestID(r *http.Request, id string) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), requestIDKey, id))
}
