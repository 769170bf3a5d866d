// Package man renders paddock's manual pages, and does nothing else.
//
// paddock(8) is urfave/cli's page of the command line (App.ToMarkdown, the
// Markdown that App.ToManWithSection renders) put into man-pages(7) order
// around the hand-written parts in paddock.8.md: DESCRIPTION, SIGNALS,
// FILES, EXAMPLES and SEE ALSO. The parts that would go stale by hand are
// generated: SYNOPSIS and COMMANDS from the app, EXIT STATUS from the
// statuses the caller passes (package main's constants and the worker's),
// ENVIRONMENT from every flag's EnvVars, worker.Known() and the variables
// listed in Environ.
//
// paddock.ini(5) is hand-written Markdown (paddock.ini.5.md) in which
// marker comments are replaced by generated text: the [server:main]
// settings from worker.Known(), with how each is applied on reload, and the
// names every built-in factory is registered under, from the default
// registry.
//
// Both pages are rendered with go-md2man; the .TH line carries no date
// unless Options.Date sets one, so a page is the same on every run and
// the committed man/paddock.8 and man/paddock.ini.5 can be compared with a
// fresh rendering (TestManPages in internal/command).
package man
