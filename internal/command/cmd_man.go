package command

import (
	"fmt"
	"io"
	"os"

	"github.com/urfave/cli/v2"

	"paddock/man"
)

// manCommand is `paddock man [--section 8|5]`: it prints paddock(8) or
// paddock.ini(5) as roff, the same bytes as the committed man/paddock.8
// and man/paddock.ini.5 (unless SOURCE_DATE_EPOCH dates the title line).
func manCommand() *cli.Command {
	return &cli.Command{
		Name:  "man",
		Usage: "print the manual page: paddock(8), or paddock.ini(5) with --section 5",
		Description: "Prints the page as roff, for man -l - or to install as paddock.8 / paddock.ini.5.\n" +
			"With SOURCE_DATE_EPOCH set, the title line carries that date.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "section", Aliases: []string{"s"}, Value: "8", Usage: "the `SECTION`: 8 (the command) or 5 (the config file)"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return cli.Exit(fmt.Sprintf("paddock man: unexpected argument %q (want --section 8 or 5)", c.Args().First()), ExitUsage)
			}
			var opt man.Options
			if epoch, ok := os.LookupEnv("SOURCE_DATE_EPOCH"); ok {
				date, err := man.DateFromEpoch(epoch)
				if err != nil {
					return cli.Exit("paddock man: "+err.Error(), ExitUsage)
				}
				opt.Date = date
			}
			page, err := manPage(c.String("section"), opt)
			if err != nil {
				return cli.Exit("paddock man: "+err.Error(), ExitUsage)
			}
			if _, err := c.App.Writer.Write(page); err != nil {
				return cli.Exit(fmt.Sprintf("paddock man: write: %v", err), ExitFailed)
			}
			return nil
		},
	}
}

// manPage renders the page of section "8" or "5". Page 8 documents a
// fresh app, not the running one: App.Run adds a help command and flag
// that the committed page does not have.
func manPage(section string, opt man.Options) ([]byte, error) {
	switch section {
	case "8":
		page, err := man.Page8(newApp(io.Discard, io.Discard), exitStatuses(), opt)
		if err != nil {
			return nil, fmt.Errorf("render paddock(8): %w", err)
		}
		return page, nil
	case "5":
		page, err := man.PageIni5(opt)
		if err != nil {
			return nil, fmt.Errorf("render paddock.ini(5): %w", err)
		}
		return page, nil
	}
	return nil, fmt.Errorf("--section %q: want 8 (paddock) or 5 (paddock.ini)", section)
}

// exitStatuses are the EXIT STATUS of paddock(8), from the constants in
// app.go.
func exitStatuses() []man.ExitStatus {
	return []man.ExitStatus{
		{Code: ExitOK, Meaning: "Success; for serve, a requested stop (TERM, INT, QUIT, ctl stop)."},
		{Code: ExitFailed, Meaning: "The operation failed: a broken config (one 'file:line: [section]: message' line per problem on stderr), " +
			"serving failed, or a ctl command the master refused."},
		{Code: ExitUsage, Meaning: "A bad command line; check --graph json: the config did not load (the JSON names the error)."},
		{Code: ExitNoReach, Meaning: "ctl: the control socket cannot be reached (the message names the path tried and how to set it)."},
		{Code: ExitBootError, Meaning: "serve: no worker could boot at first start (gunicorn's WORKER_BOOT_ERROR); the worker's error is printed."},
	}
}
