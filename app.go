package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/urfave/cli/v2"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// Exit statuses.
const (
	exitOK      = 0
	exitFailed  = 1 // the operation failed (check: the config has errors)
	exitUsage   = 2 // bad command line; check --graph: the load failed
	exitNoReach = 3 // ctl: cannot reach the control socket
	// exitBootError: serve: no worker could boot at first start
	// (gunicorn's WORKER_BOOT_ERROR); the worker's error is printed.
	exitBootError = 3
)

// run builds the CLI and runs it, returning the exit status. Tests call it
// in-process with their own writers.
func run(args []string, stdout, stderr io.Writer) int {
	app := newApp(stdout, stderr)
	err := app.Run(args)
	if err == nil {
		return exitOK
	}
	var ec cli.ExitCoder
	if errors.As(err, &ec) {
		if msg := ec.Error(); msg != "" {
			fmt.Fprintln(stderr, msg)
		}
		return ec.ExitCode()
	}
	fmt.Fprintln(stderr, "paddock:", err)
	return exitUsage
}

func newApp(stdout, stderr io.Writer) *cli.App {
	return &cli.App{
		Name:                 "paddock",
		Usage:                "serve HTTP through paste.deploy INI pipelines, gunicorn style",
		Version:              version,
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
