package pipeline

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
)

type ctxKey int

// metaKey finds the request's reqMeta in its context.
const metaKey ctxKey = 1

// reqMeta is what the catalog attaches to a request. Both fields live in
// one context value so a filter changing either adds one link to the
// context chain, and can allocate it together with the request copy it
// needs anyway (see metaRequest): a value per field through
// context.WithValue cost three allocations per filter (context, boxed
// string, request) on every request.
type reqMeta struct {
	scriptName string
	requestID  string
	// route, set by TrackRoute, is where urlmap writes the script name of
	// the mount it routed the request to ("" when none matched).
	route *string
}

// metaCtx is a context carrying a reqMeta. Every other method is the
// parent's, so cancellation propagates as for context.WithValue (the
// context package finds the parent's cancelCtx through Value and starts no
// goroutine for children).
type metaCtx struct {
	context.Context
	meta reqMeta
}

func (c *metaCtx) Value(key any) any {
	if key == any(metaKey) {
		return &c.meta
	}
	return c.Context.Value(key)
}

// String names the context in the style of context.WithValue, for
// debugging output.
func (c *metaCtx) String() string { return fmt.Sprint(c.Context) + ".WithValue(pipeline.reqMeta)" }

func requestMeta(r *http.Request) reqMeta {
	if m, ok := r.Context().Value(metaKey).(*reqMeta); ok {
		return *m
	}
	return reqMeta{}
}

// metaRequest is a shallow request copy and its context in one
// allocation. Never pool it: the request and its metadata strings may be
// retained by handlers (goroutines, logs) after ServeHTTP returns.
type metaRequest struct {
	req http.Request
	ctx metaCtx
}

// init makes m.req a shallow copy of r whose context carries meta.
func (m *metaRequest) init(r *http.Request, meta reqMeta) *http.Request {
	m.ctx = metaCtx{Context: r.Context(), meta: meta}
	// WithContext is inlined and its result only copied, so the request it
	// allocates stays on the stack.
	m.req = *r.WithContext(&m.ctx)
	return &m.req
}

// urlRequest is a metaRequest with its own URL, for filters that rewrite
// the path or scheme (urlmap, http_proxy_to_wsgi): one allocation instead
// of request, URL, context and boxed value.
type urlRequest struct {
	metaRequest
	url url.URL
}

// init makes u.req a shallow copy of r with a copy of r.URL (u.url, which
// the caller edits) and meta in its context.
func (u *urlRequest) init(r *http.Request, meta reqMeta) *http.Request {
	r2 := u.metaRequest.init(r, meta)
	u.url = *r.URL
	r2.URL = &u.url
	return r2
}

// ScriptName returns the mount prefix a composite (urlmap) moved from the
// request path into the request's script name: WSGI's SCRIPT_NAME. The
// request's URL.Path is then WSGI's PATH_INFO. Empty at the root.
func ScriptName(r *http.Request) string {
	if m, ok := r.Context().Value(metaKey).(*reqMeta); ok {
		return m.scriptName
	}
	return ""
}

// WithScriptName returns a shallow copy of r whose script name is
// scriptName. It does not change r.URL.
func WithScriptName(r *http.Request, scriptName string) *http.Request {
	meta := requestMeta(r)
	meta.scriptName = scriptName
	return new(metaRequest).init(r, meta)
}

// RequestID returns the request id the request_id filter assigned, or "".
func RequestID(r *http.Request) string {
	if m, ok := r.Context().Value(metaKey).(*reqMeta); ok {
		return m.requestID
	}
	return ""
}

// WithRequestID returns a shallow copy of r carrying id as its request id.
func WithRequestID(r *http.Request, id string) *http.Request {
	meta := requestMeta(r)
	meta.requestID = id
	return new(metaRequest).init(r, meta)
}

// routeRequest is a metaRequest and the route slot it points to, in one
// allocation.
type routeRequest struct {
	metaRequest
	route string
}

// TrackRoute returns a shallow copy of r and a slot that holds, once the
// pipeline answered it, the route the request took: the script name of
// the urlmap mount that served it ("/" for the root, or when the pipeline
// has no urlmap), or "" when a urlmap matched no mount. Metrics label
// requests with it: its values are bounded by the config.
func TrackRoute(r *http.Request) (*http.Request, *string) {
	rr := &routeRequest{route: "/"}
	meta := requestMeta(r)
	meta.route = &rr.route
	return rr.metaRequest.init(r, meta), &rr.route
}
