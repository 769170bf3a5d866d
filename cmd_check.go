package main

import (
	"errors"
	"fmt"

	"github.com/urfave/cli/v2"

	"paddock/pipeline"
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
				return cli.Exit("paddock check: need exactly one CONFIG argument", exitUsage)
			}
			path := c.Args().First()
			kind := pipeline.ObjectKind(c.String("kind"))
			switch kind {
			case pipeline.ObjectApp, pipeline.ObjectFilter, pipeline.ObjectServer:
			default:
				return cli.Exit(fmt.Sprintf("paddock check: --kind %q: want app, filter or server", kind), exitUsage)
			}
			switch c.String("graph") {
			case "json":
				out, ok := pipeline.GraphJSON(path, c.String("name"), kind)
				c.App.Writer.Write(out)
				if !ok {
					return cli.Exit("", exitUsage)
				}
				return nil
			case "text":
				g, err := pipeline.Graph(path, c.String("name"), kind)
				if err != nil {
					return cli.Exit(formatErrors(err), exitFailed)
				}
				fmt.Fprint(c.App.Writer, pipeline.GraphText(g))
				return nil
			case "dot":
				g, err := pipeline.Graph(path, c.String("name"), kind)
				if err != nil {
					return cli.Exit(formatErrors(err), exitFailed)
				}
				fmt.Fprint(c.App.Writer, pipeline.GraphDot(g))
				return nil
			case "":
			default:
				return cli.Exit(fmt.Sprintf("paddock check: --graph %q: want json, text or dot", c.String("graph")), exitUsage)
			}
			res, err := pipeline.Check(pipeline.LoadOptions{Path: path, Name: c.String("name"), Kind: kind, Registry: pipeline.NewDefaultRegistry()})
			for _, w := range res.Warnings {
				fmt.Fprintf(c.App.ErrWriter, "%s (warning)\n", w)
			}
			if err != nil {
				return cli.Exit(formatErrors(err), exitFailed)
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
