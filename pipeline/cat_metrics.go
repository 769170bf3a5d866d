package pipeline

import (
	"context"
	"net/http"
	"time"
)

// metricsContentType is Prometheus' text exposition format 0.0.4.
const metricsContentType = "text/plain; version=0.0.4; charset=utf-8"

// metricsTimeout bounds one scrape (the master asks every worker).
const metricsTimeout = 5 * time.Second

// metricsFactory is the metrics app: mount it with urlmap (e.g. at
// /metrics) and every worker answers with the metrics of the whole
// server, summed by the master. It has no options.
func metricsFactory() Factory {
	return App("Prometheus metrics of the whole server (text exposition)", func(c *Config) (http.Handler, error) {
		src := c.Metrics()
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodGet && r.Method != http.MethodHead {
				w.Header().Set("Allow", "GET, HEAD")
				catWriteText(w, http.StatusMethodNotAllowed, "405 Method Not Allowed\n")
				return
			}
			if src == nil {
				catWriteText(w, http.StatusServiceUnavailable, "metrics are served by paddock serve only\n")
				return
			}
			ctx, cancel := context.WithTimeout(r.Context(), metricsTimeout)
			defer cancel()
			body, err := src(ctx)
			if err != nil {
				catLogger(c).Warn("metrics scrape failed", "error", err)
				catWriteText(w, http.StatusServiceUnavailable, "metrics unavailable: "+err.Error()+"\n")
				return
			}
			w.Header().Set("Content-Type", metricsContentType)
			w.Header().Set("Cache-Control", "no-store")
			if r.Method == http.MethodHead {
				return
			}
			_, _ = w.Write(body)
		}), nil
	})
}
