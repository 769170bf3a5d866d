package main

import "github.com/urfave/cli/v2"

func serveCommand() *cli.Command {
	return &cli.Command{Name: "serve", Usage: "serve CONFIG in the foreground", Action: func(c *cli.Context) error { return cli.Exit("not yet", 1) }}
}
