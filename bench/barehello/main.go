// Command barehello is the baseline of bench/workers.sh: a bare net/http
// server answering the same fixed body as the bench pipeline's app.
package main

import (
	"flag"
	"log"
	"net/http"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8081", "listen `ADDR`")
	flag.Parse()
	body := []byte(`{"service": "paddock bench", "version": "v1"}`)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	})
	log.Fatal(http.ListenAndServe(*addr, h))
}
