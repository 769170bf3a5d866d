package command

import (
	"errors"
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"paddock/pipeline"
	"paddock/worker"
)

func checkCommand() *cli.Command {
	return &cli.Command{
		Name:      "check",
		Usage:     "validate a paste config; print its composition graph",
		ArgsUsage: "CONFIG",
		Description: "Loads NAME from CONFIG as paddock would serve it and checks that every factory it names is registered.\n" +
			"Exit 0 when it loads; 1 with one 'file:line: [section]: message' line per problem on stderr.\n" +
			"With --graph json it prints the canonical composition graph (PasteDeploy's, built without the factories)\n" +
			"and exits 2 with {\"error\": CLASS, \"message\": ...} when the load fails.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "name", Aliases: []string{"n"}, Value: "main", Usage: "the `NAME` of the app (or filter, server) to load"},
			&cli.StringFlag{Name: "kind", Value: "app", Usage: "what to load: app, filter or server"},
			&cli.StringFlag{Name: "graph", Usage: "print the graph: json, text or dot"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return cli.Exit("paddock check: need exactly one CONFIG argument", ExitUsage)
			}
			path := c.Args().First()
			kind := pipeline.ObjectKind(c.String("kind"))
			switch kind {
			case pipeline.ObjectApp, pipeline.ObjectFilter, pipeline.ObjectServer:
			default:
				return cli.Exit(fmt.Sprintf("paddock check: --kind %q: want app, filter or server", kind), ExitUsage)
			}
			switch c.String("graph") {
			case "json":
				out, ok := pipeline.GraphJSON(path, c.String("name"), kind)
				c.App.Writer.Write(out)
				if !ok {
					return cli.Exit("", ExitUsage)
				}
				return nil
			case "text":
				g, err := pipeline.Graph(path, c.String("name"), kind)
				if err != nil {
					return cli.Exit(formatErrors(err), ExitFailed)
				}
				fmt.Fprint(c.App.Writer, pipeline.GraphText(g))
				return nil
			case "dot":
				g, err := pipeline.Graph(path, c.String("name"), kind)
				if err != nil {
					return cli.Exit(formatErrors(err), ExitFailed)
				}
				fmt.Fprint(c.App.Writer, pipeline.GraphDot(g))
				return nil
			case "":
			default:
				return cli.Exit(fmt.Sprintf("paddock check: --graph %q: want json, text or dot", c.String("graph")), ExitUsage)
			}
			res, err := pipeline.Check(pipeline.LoadOptions{Path: path, Name: c.String("name"), Kind: kind, Registry: pipeline.NewDefaultRegistry()})
			for _, w := range res.Warnings {
				fmt.Fprintf(c.App.ErrWriter, "%s (warning)\n", w)
			}
			if kind == pipeline.ObjectApp {
				// serve reads [server:main] too: its bad values
				// (access_log_format, workers...) are config errors.
				if serr := checkServerSettings(path); serr != nil {
					if err == nil {
						return cli.Exit(serr.Error(), ExitFailed)
					}
					return cli.Exit(formatErrors(err)+"\n"+serr.Error(), ExitFailed)
				}
			}
			if err != nil {
				return cli.Exit(formatErrors(err), ExitFailed)
			}
			fmt.Fprintf(c.App.Writer, "%s: ok\n", path)
			return nil
		},
	}
}

// formatErrors prints one line per configuration problem.
func formatErrors(err error) string {
	var list pipeline.ErrorList
	if errors.As(err, &list) {
		return list.Error()
	}
	return err.Error()
}

// checkServerSettings resolves the [server:main] section of the config as
// serve would, from the file alone (flags and PADDOCK_* variables belong
// to serve's command line): nil when there is none or it is valid, else
// one file:line line per bad setting.
func checkServerSettings(path string) error {
	srv, _, err := worker.LoadServer(path, "main", nil)
	if err != nil {
		var pe *pipeline.Error
		var list pipeline.ErrorList
		if errors.As(err, &pe) && pe.Section != "" && strings.HasPrefix(pe.Section, "server:") || errors.As(err, &list) {
			return errors.New(formatErrors(err))
		}
		return nil // not the server's problem: the app check reports it
	}
	if srv == nil {
		return nil
	}
	_, _, err = worker.Resolve(worker.Input{Server: srv, LookupEnv: func(string) (string, bool) { return "", false }})
	return err
}
