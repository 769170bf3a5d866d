package control

import (
	"net/http"
	"strings"
)

// Route is one endpoint of the control API: the server's mux pattern and
// the client's request are both made from it, so the table below is the
// only place a path is written.
type Route struct {
	Method string
	// Path may hold one {name} wildcard (net/http.ServeMux syntax).
	Path string
}

// pattern is the ServeMux pattern of the route.
func (r Route) pattern() string { return r.Method + " " + r.Path }

// path is the route's path with its wildcard, if any, set to value.
func (r Route) path(value string) string {
	if i := strings.IndexByte(r.Path, '{'); i >= 0 {
		if j := strings.IndexByte(r.Path[i:], '}'); j >= 0 {
			return r.Path[:i] + value + r.Path[i+j+1:]
		}
	}
	return r.Path
}

// The control API (docs/control.md).
var (
	RouteStatus        = Route{http.MethodGet, "/v1/status"}
	RouteWorkers       = Route{http.MethodGet, "/v1/workers"}
	RouteWorkersAdd    = Route{http.MethodPost, "/v1/workers/add"}
	RouteWorkersRemove = Route{http.MethodPost, "/v1/workers/remove"}
	RouteWorkersTarget = Route{http.MethodPut, "/v1/workers/target"}
	RouteWorkerKill    = Route{http.MethodDelete, "/v1/workers/{pid}"}
	RouteReload        = Route{http.MethodPost, "/v1/reload"}
	RouteConfigCheck   = Route{http.MethodPost, "/v1/config/check"}
	RouteUpgrade       = Route{http.MethodPost, "/v1/upgrade"}
	RouteStop          = Route{http.MethodPost, "/v1/stop"}
	RouteConfig        = Route{http.MethodGet, "/v1/config"}
	RoutePipeline      = Route{http.MethodGet, "/v1/pipeline"}
	RouteLogsReopen    = Route{http.MethodPost, "/v1/logs/reopen"}
	RouteListeners     = Route{http.MethodGet, "/v1/listeners"}
	RouteUpstreams     = Route{http.MethodGet, "/v1/upstreams"}
)
