package pipeline

import (
	"net/http"
	"runtime/debug"
)

// catchErrorsFactory turns panics in the wrapped handler into 500
// responses, like oslo_middleware.catch_errors.CatchErrors.
func catchErrorsFactory() Factory {
	return Filter("recovers panics from the inner handler and answers 500 (oslo.middleware catch_errors)", newCatchErrors)
}

// catchErrorsBody is oslo's message for the 500 response.
const catchErrorsBody = "An unknown error has occurred. Please try your request again.\n"

func newCatchErrors(c *Config) (Middleware, error) {
	catAcceptOptions(c, "oslo_config_project", "oslo_config_file", "oslo_config_program")
	log := catLogger(c)
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			sw := getStatusWriter(w)
			defer func() {
				v := recover()
				if v == nil {
					putStatusWriter(sw)
					return
				}
				wrote := sw.wrote
				putStatusWriter(sw)
				if v == http.ErrAbortHandler {
					// The deliberate way to abort a response; net/http
					// handles it quietly.
					panic(v)
				}
				log.Error("unhandled panic while processing request", "request_id", RequestID(r), "method", r.Method, "path", r.URL.Path, "panic", v, "stack", string(debug.Stack()))
				if wrote {
					// Part of a response is on the wire: the only honest
					// end is to cut the connection so the client sees
					// the truncation.
					panic(http.ErrAbortHandler)
				}
				catWriteText(w, http.StatusInternalServerError, catchErrorsBody)
			}()
			next.ServeHTTP(sw, r)
		})
	}, nil
}
