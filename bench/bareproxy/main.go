// Command bareproxy is the Go floor of bench/proxy.sh: the smallest
// reverse proxy net/http offers (httputil.ReverseProxy with a tuned
// http.Transport, no middleware), to tell how much of the gap between
// paddock's proxy app and nginx is Go's own HTTP stack and how much is
// paddock's.
package main

import (
	"flag"
	"log"
	"net/http"
	"net/http/httputil"
	"net/url"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8082", "listen `ADDR`")
	backend := flag.String("backend", "http://127.0.0.1:8081", "upstream `URL`")
	flag.Parse()
	u, err := url.Parse(*backend)
	if err != nil {
		log.Fatal(err)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 128
	rp := &httputil.ReverseProxy{
		Rewrite:   func(pr *httputil.ProxyRequest) { pr.SetURL(u); pr.SetXForwarded() },
		Transport: tr,
	}
	log.Fatal(http.ListenAndServe(*addr, rp))
}
