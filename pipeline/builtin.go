package pipeline

// RegisterBuiltins registers paddock's built-in catalog in r: every factory
// under egg:paddock#NAME and under the Paste / oslo.middleware names real
// configs use. One explicit list, so tests can build fresh registries.
func RegisterBuiltins(r *Registry) {
	// Applications.
	r.Register(helloFactory(), "egg:paddock#hello")
	r.Register(staticFactory(),
		"egg:paddock#static",
		"egg:Paste#static",
		"paste.urlparser:make_static")
	r.Register(proxyFactory(),
		"egg:paddock#proxy",
		"egg:Paste#proxy",
		"paste.proxy:make_proxy")
	r.Register(cgiFactory(),
		"egg:paddock#cgi",
		"egg:Paste#cgi",
		"paste.cgiapp:make_cgi_application")
	r.Register(redirectFactory(), "egg:paddock#redirect")
	// oslo.middleware registers healthcheck in both the app and the filter
	// group; registry names are unique, so the egg name is the app (what
	// OpenStack's api-paste.ini files use) and the filter has its own.
	r.Register(healthcheckAppFactory(),
		"egg:paddock#healthcheck",
		"egg:oslo.middleware#healthcheck",
		"oslo_middleware:Healthcheck.app_factory")

	// Composites.
	r.Register(urlmapFactory(),
		"egg:paddock#urlmap",
		"egg:Paste#urlmap",
		"paste.urlmap:urlmap_factory")
	r.Register(cascadeFactory(),
		"egg:paddock#cascade",
		"egg:Paste#cascade",
		"paste.cascade:make_cascade")

	// Filters.
	r.Register(healthcheckFilterFactory(),
		"egg:paddock#healthcheck_filter",
		"egg:paddock#healthcheck",
		"egg:oslo.middleware#healthcheck",
		"oslo_middleware:Healthcheck.factory")
	r.Register(corsFactory(),
		"egg:paddock#cors",
		"egg:oslo.middleware#cors",
		"oslo_middleware.cors:filter_factory",
		"oslo_middleware:CORS.factory",
		"oslo_middleware.cors:CORS.factory")
	r.Register(sizelimitFactory(),
		"egg:paddock#sizelimit",
		"egg:oslo.middleware#sizelimit",
		"oslo_middleware.sizelimit:RequestBodySizeLimiter.factory",
		"oslo_middleware:RequestBodySizeLimiter.factory")
	r.Register(requestIDFactory(),
		"egg:paddock#request_id",
		"egg:oslo.middleware#request_id",
		"oslo_middleware:RequestId.factory",
		"oslo_middleware.request_id:RequestId.factory")
	r.Register(httpProxyToWSGIFactory(),
		"egg:paddock#http_proxy_to_wsgi",
		"egg:oslo.middleware#http_proxy_to_wsgi",
		"oslo_middleware:HTTPProxyToWSGI.factory",
		"oslo_middleware.http_proxy_to_wsgi:HTTPProxyToWSGI.factory")
	r.Register(catchErrorsFactory(),
		"egg:paddock#catch_errors",
		"egg:oslo.middleware#catch_errors",
		"oslo_middleware:CatchErrors.factory",
		"oslo_middleware.catch_errors:CatchErrors.factory",
		// A filter_app_factory in Paste; as a filter it is used the same
		// way in a pipeline.
		"egg:Paste#error_catcher")
	r.Register(transloggerFactory(),
		"egg:paddock#translogger",
		"egg:Paste#translogger",
		"paste.translogger:make_filter")
	r.Register(headersFactory(), "egg:paddock#headers")
	r.Register(gzipFactory(), "egg:paddock#gzip", "egg:Paste#gzip", "paste.gzipper:make_gzip_middleware")
	r.Register(basicAuthFactory(), "egg:paddock#basic_auth", "egg:Paste#auth_basic", "paste.auth.basic:make_basic")
	r.Register(ratelimitFactory(), "egg:paddock#ratelimit")
	r.Register(timeoutFactory(), "egg:paddock#timeout")
	r.Register(errordocumentFactory(), "egg:paddock#errordocument", "egg:Paste#errordocument", "paste.errordocument:make_errordocument")
	r.Register(metricsFactory(), "egg:paddock#metrics")

	// Servers: paddock serves the app itself; these factories hand it the
	// [server:] settings.
	registerServers(r)
}
