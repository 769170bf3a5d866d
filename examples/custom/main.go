// Command custom shows how a Go program embeds paddock's pipeline loader
// and registers factories of its own: the Go analog of a Python entry
// point. Its config (custom.ini) names them under their own spec strings,
// including the Python name a factory replaces, next to paddock's built-in
// catalog.
//
//	go run ./examples/custom -config examples/custom/custom.ini -bind 127.0.0.1:8081
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"paddock/pipeline"
)

// newRegistry is paddock's catalog plus this program's factories.
func newRegistry() *pipeline.Registry {
	r := pipeline.NewDefaultRegistry()
	r.Register(pipeline.App("greets the caller by name", greeterFactory),
		"egg:custom#greeter")
	// Registering under the Python name lets an existing api-paste.ini
	// load unchanged: this stands in for keystonemiddleware's auth_token.
	r.Register(pipeline.Filter("requires a static bearer token", tokenAuthFactory),
		"egg:custom#token_auth", "keystonemiddleware.auth_token:filter_factory")
	return r
}

func greeterFactory(c *pipeline.Config) (http.Handler, error) {
	greeting := c.String("greeting", "Hello")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := strings.Trim(r.URL.Path, "/")
		if name == "" {
			name = "world"
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintf(w, "%s, %s! (mounted at %q)\n", greeting, name, pipeline.ScriptName(r))
	}), nil
}

func tokenAuthFactory(c *pipeline.Config) (pipeline.Middleware, error) {
	token := c.String("token", "")
	if token == "" {
		return nil, c.Errorf("token", "token: must be set")
	}
	want := "Bearer " + token
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Authorization") != want {
				w.Header().Set("WWW-Authenticate", `Bearer realm="custom"`)
				http.Error(w, "unauthorized", http.StatusUnauthorized)
				return
			}
			next.ServeHTTP(w, r)
		})
	}, nil
}

func main() {
	config := flag.String("config", "examples/custom/custom.ini", "paste `INI` file")
	bind := flag.String("bind", "127.0.0.1:8081", "`ADDR` to listen on")
	flag.Parse()
	log := hclog.New(&hclog.LoggerOptions{Name: "custom"})
	if err := serve(*config, *bind, log); err != nil {
		log.Error("stopped", "error", err)
		os.Exit(1)
	}
}

func serve(config, bind string, log hclog.Logger) error {
	p, err := pipeline.Load(pipeline.LoadOptions{Path: config, Registry: newRegistry(), Logger: log})
	if err != nil {
		return fmt.Errorf("load %s: %w", config, err)
	}
	defer p.Close()
	p.Start() // background work of the factories (a proxy's health probes)
	srv := &http.Server{Addr: bind, Handler: p.Handler, ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	log.Info("listening", "addr", bind)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdown); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}
