package command

import (
	"fmt"
	"io"
	"testing"

	"github.com/urfave/cli/v2"
)

// Values urfave/cli took from PADDOCK_* variables are left to
// worker.Resolve, so their origin is reported as env, not flag.
func TestCommandLineSettings(t *testing.T) {
	t.Setenv("PADDOCK_WORKERS", "3")
	t.Setenv("PADDOCK_KEEPALIVE", "9")
	t.Setenv("PADDOCK_BIND", "127.0.0.1:7 127.0.0.1:8")
	t.Setenv("PADDOCK_REUSE_PORT", "yes")
	tests := []struct {
		name string
		args []string
		want map[string]string
	}{
		{"env only", nil, map[string]string{}},
		{"flags over env", []string{"--keepalive", "4", "--bind", "127.0.0.1:1", "--bind", "unix:/x", "--reuse-port", "--workers=0"},
			map[string]string{"keepalive": "4", "bind": "127.0.0.1:1 unix:/x", "reuse_port": "true", "workers": "0"}},
		{"switch with a value", []string{"--reuse-port=off"}, map[string]string{"reuse_port": "off"}},
		{"gunicorn spelling", []string{"--loglevel", "debug"}, map[string]string{"loglevel": "debug"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cmd := serveCommand()
			var got map[string]string
			cmd.Action = func(c *cli.Context) error { got = commandLineSettings(c); return nil }
			app := &cli.App{Commands: []*cli.Command{cmd}, Writer: io.Discard, ErrWriter: io.Discard}
			args := append(append([]string{"paddock", "serve"}, tc.args...), "x.ini")
			if err := app.Run(args); err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}
