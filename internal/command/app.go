package command

import (
	"errors"
	"fmt"
	"io"

	"github.com/urfave/cli/v2"
)

// Build is what the release build stamps into the binary (main's
// -ldflags "-X main.version=... -X main.commit=...").
type Build struct {
	Version string
	// Commit is "" when the build did not set it: `paddock version` then
	// uses the revision go build stamped (vcs.revision), if any.
	Commit string
}

// build is the running binary's Build, set by Run.
var build = Build{Version: "dev"}

// Exit statuses.
const (
	ExitOK      = 0
	ExitFailed  = 1 // the operation failed (check: the config has errors)
	ExitUsage   = 2 // bad command line; check --graph: the load failed
	ExitNoReach = 3 // ctl: cannot reach the control socket
	// ExitBootError: serve: no worker could boot at first start
	// (gunicorn's WORKER_BOOT_ERROR); the worker's error is printed.
	ExitBootError = 3
)

// Run builds the CLI and runs it, returning the exit status. Tests call it
// in-process with their own writers.
func Run(args []string, stdout, stderr io.Writer, b Build) int {
	if b.Version != "" {
		build = b
	}
	app := newApp(stdout, stderr)
	err := app.Run(args)
	if err == nil {
		return ExitOK
	}
	var ec cli.ExitCoder
	if errors.As(err, &ec) {
		if msg := ec.Error(); msg != "" {
			fmt.Fprintln(stderr, msg)
		}
		return ec.ExitCode()
	}
	fmt.Fprintln(stderr, "paddock:", err)
	return ExitUsage
}

func newApp(stdout, stderr io.Writer) *cli.App {
	return &cli.App{
		Name:                 "paddock",
		Usage:                "serve HTTP through paste.deploy INI pipelines, gunicorn style",
		Version:              build.Version,
		Writer:               stdout,
		ErrWriter:            stderr,
		HideVersion:          true,
		EnableBashCompletion: false,
		ExitErrHandler:       func(*cli.Context, error) {}, // run() reports errors
		Commands: []*cli.Command{
			serveCommand(),
			checkCommand(),
			ctlCommand(),
			workerCommand(),
			manCommand(),
			{
				Name:  "version",
				Usage: "print the version, the commit and the Go toolchain",
				Action: func(c *cli.Context) error {
					return printVersion(c.App.Writer) // version.go
				},
			},
		},
	}
}
