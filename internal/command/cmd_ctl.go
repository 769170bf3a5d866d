package command

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"paddock/control"
)

// ctlCommand is `paddock ctl`: a client of the master's control socket
// (docs/control.md). Exit 0 ok, 1 the operation failed, 2 usage, 3 the
// socket cannot be reached.
func ctlCommand() *cli.Command {
	return &cli.Command{
		Name:      "ctl",
		Usage:     "drive a running master through its control socket",
		ArgsUsage: "COMMAND [ARGS]",
		Description: "Talks to the master's control socket (HTTP+JSON on a unix socket; see docs/control.md).\n" +
			"The socket is found as the master finds it: --socket (or PADDOCK_CTL_SOCKET), else\n" +
			"$RUNTIME_DIRECTORY/ctl.sock, else $XDG_RUNTIME_DIR/paddock/ctl.sock, else next to --pidfile\n" +
			"(or PADDOCK_PIDFILE): app.pid gives app.ctl.sock.\n" +
			"Prints readable tables; --json prints the answer's JSON body as it came.\n" +
			"Exit 0 ok; 1 the operation failed (a config error prints one file:line line per problem);\n" +
			"2 bad command line; 3 the control socket cannot be reached.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "socket", Aliases: []string{"s"}, EnvVars: []string{"PADDOCK_CTL_SOCKET"}, Usage: "the control socket `PATH`"},
			&cli.StringFlag{Name: "pidfile", EnvVars: []string{"PADDOCK_PIDFILE"}, Usage: "find the socket next to the master's pidfile `FILE`"},
			&cli.BoolFlag{Name: "json", Usage: "print the raw JSON answer"},
			&cli.DurationFlag{Name: "timeout", Value: control.DefaultClientTimeout, Usage: "give up on an answer after `DURATION`"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() == 0 {
				return cli.Exit("paddock ctl: need a command: status, workers, reload, upgrade, stop, config, pipeline, logs, listeners or upstreams", ExitUsage)
			}
			return cli.Exit(fmt.Sprintf("paddock ctl: unknown command %q (want status, workers, reload, upgrade, stop, config, pipeline, logs, listeners or upstreams)", c.Args().First()), ExitUsage)
		},
		Subcommands: []*cli.Command{
			ctlLeaf("status", "show the master's state", "", 0, nil, ctlStatus),
			{
				Name:  "workers",
				Usage: "list, add, remove or kill workers",
				Flags: []cli.Flag{jsonFlag()},
				Action: func(c *cli.Context) error {
					if c.NArg() > 0 {
						return cli.Exit(fmt.Sprintf("paddock ctl workers: unknown command %q (want list, add, remove, set or kill)", c.Args().First()), ExitUsage)
					}
					return runCtl(c, 0, nil, ctlWorkersList)
				},
				Subcommands: []*cli.Command{
					ctlLeaf("list", "list the workers", "", 0, nil, ctlWorkersList),
					ctlLeaf("add", "start N more workers (default 1)", "[N]", 1, nil, ctlWorkersChange((*control.Client).AddWorkers, true)),
					ctlLeaf("remove", "stop the N oldest workers gracefully (default 1; never below 1)", "[N]", 1, nil, ctlWorkersChange((*control.Client).RemoveWorkers, true)),
					ctlLeaf("set", "keep N workers", "N", 1, nil, ctlWorkersChange((*control.Client).SetTarget, false)),
					ctlLeaf("kill", "stop the worker PID gracefully (--force: SIGKILL); the master replaces it", "PID [--force]", 1,
						[]cli.Flag{&cli.BoolFlag{Name: "force", Aliases: []string{"f"}, Usage: "SIGKILL instead of a graceful stop"}}, ctlWorkersKill),
				},
			},
			ctlLeaf("reload", "re-read the config and roll the workers (HUP); waits until the new workers are ready", "", 0, nil, ctlReload),
			ctlLeaf("upgrade", "replace the binary with zero downtime (USR2)", "", 0, nil, ctlUpgrade),
			ctlLeaf("stop", "stop the master gracefully (TERM); --now at once (INT)", "[--now] [--grace D]", 0,
				[]cli.Flag{
					&cli.BoolFlag{Name: "now", Usage: "stop at once, like INT"},
					&cli.DurationFlag{Name: "grace", Usage: "let in-flight requests `DURATION` to finish (default graceful_timeout)"},
				}, ctlStop),
			{
				Name:  "config",
				Usage: "show the effective settings, or check a config file",
				Flags: []cli.Flag{jsonFlag(), rawFlag()},
				Action: func(c *cli.Context) error {
					if c.NArg() > 0 {
						return cli.Exit(fmt.Sprintf("paddock ctl config: unknown command %q (want show or check)", c.Args().First()), ExitUsage)
					}
					return runCtl(c, 0, nil, ctlConfigShow)
				},
				Subcommands: []*cli.Command{
					ctlLeaf("show", "the effective settings and where each came from (--raw: the config file)", "[--raw]", 0, []cli.Flag{rawFlag()}, ctlConfigShow),
					ctlLeaf("check", "validate FILE as the master would load it, without applying it", "FILE", 1, nil, ctlConfigCheck),
				},
			},
			ctlLeaf("pipeline", "print the running composition graph", "[--format text|json|dot]", 0,
				[]cli.Flag{&cli.StringFlag{Name: "format", Usage: "`FORMAT`: text, json or dot (default text; json with --json)"}}, ctlPipeline),
			{
				Name:  "logs",
				Usage: "reopen log files (USR1): logs reopen",
				Action: func(c *cli.Context) error {
					return cli.Exit("paddock ctl logs: need a command: reopen", ExitUsage)
				},
				Subcommands: []*cli.Command{ctlLeaf("reopen", "reopen log files in master and workers", "", 0, nil, ctlReopen)},
			},
			ctlLeaf("listeners", "list the listening sockets", "", 0, nil, ctlListeners),
			ctlLeaf("upstreams", "show the proxy apps' upstreams as each worker sees them", "", 0, nil, ctlUpstreams),
		},
	}
}

func jsonFlag() cli.Flag { return &cli.BoolFlag{Name: "json", Usage: "print the raw JSON answer"} }
func rawFlag() cli.Flag {
	return &cli.BoolFlag{Name: "raw", Usage: "print the config file as the master loaded it"}
}

// ctlLeaf is a subcommand taking at most maxArgs arguments.
func ctlLeaf(name, usage, argsUsage string, maxArgs int, flags []cli.Flag, fn func(*ctlRun) error) *cli.Command {
	return &cli.Command{
		Name:      name,
		Usage:     usage,
		ArgsUsage: argsUsage,
		Flags:     append([]cli.Flag{jsonFlag()}, flags...),
		Action: func(c *cli.Context) error {
			return runCtl(c, maxArgs, flags, fn)
		},
	}
}

// ctlRun is one ctl invocation.
type ctlRun struct {
	c      *cli.Context
	client *control.Client
	json   bool
	args   []string
	// trailing are the switches given after the arguments (urfave/cli
	// stops parsing flags at the first argument: kill 123 --force).
	trailing map[string]bool
	out      io.Writer
}

// runCtl resolves the socket and runs fn, mapping its error to ctl's exit
// codes.
func runCtl(c *cli.Context, maxArgs int, flags []cli.Flag, fn func(*ctlRun) error) error {
	r := &ctlRun{c: c, out: c.App.Writer, trailing: map[string]bool{}}
	switches := map[string]string{"json": "json"}
	for _, f := range flags {
		if bf, ok := f.(*cli.BoolFlag); ok {
			for _, n := range append([]string{bf.Name}, bf.Aliases...) {
				switches[n] = bf.Name
			}
		}
	}
	for _, a := range c.Args().Slice() {
		if name, ok := strings.CutPrefix(a, "-"); ok && a != "-" {
			name = strings.TrimPrefix(name, "-")
			if canon, ok := switches[name]; ok {
				r.trailing[canon] = true
				continue
			}
			return cli.Exit(fmt.Sprintf("paddock ctl %s: unknown flag %s (flags with a value go before the arguments)", c.Command.Name, a), ExitUsage)
		}
		r.args = append(r.args, a)
	}
	if len(r.args) > maxArgs {
		return cli.Exit(fmt.Sprintf("paddock ctl %s: too many arguments: %s", c.Command.Name, strings.Join(r.args, " ")), ExitUsage)
	}
	r.json = r.trailing["json"]
	for _, x := range c.Lineage() {
		if x.Command != nil && x.Bool("json") {
			r.json = true
		}
	}
	explicit, pidfile := lineageString(c, "socket"), lineageString(c, "pidfile")
	if explicit != "" {
		abs, err := filepath.Abs(explicit)
		if err != nil {
			return cli.Exit(fmt.Sprintf("paddock ctl: --socket %q: %v", explicit, err), ExitUsage)
		}
		explicit = abs
	}
	path, how, err := control.SocketPath(explicit, pidfile, os.LookupEnv)
	if err != nil {
		return cli.Exit("paddock ctl: "+err.Error(), ExitUsage)
	}
	if explicit != "" {
		how = "from --socket / PADDOCK_CTL_SOCKET"
	}
	timeout := control.DefaultClientTimeout
	for _, x := range c.Lineage() {
		if x.IsSet("timeout") {
			timeout = x.Duration("timeout")
			break
		}
	}
	if timeout <= 0 {
		return cli.Exit(fmt.Sprintf("paddock ctl: --timeout %s: want a positive duration", timeout), ExitUsage)
	}
	r.client = &control.Client{Path: path, How: how, Timeout: timeout}
	if r.json {
		// --json prints every answer as it came, an error answer's too;
		// the commands below then print nothing of their own.
		r.client.OnAnswer = func(b []byte) {
			r.out.Write(b)
			if len(b) > 0 && b[len(b)-1] != '\n' {
				fmt.Fprintln(r.out)
			}
		}
	}
	defer r.client.CloseIdleConnections()
	return ctlError(fn(r))
}

// lineageString is the value of the ctl-level flag name.
func lineageString(c *cli.Context, name string) string {
	for _, x := range c.Lineage() {
		if x.IsSet(name) {
			return x.String(name)
		}
	}
	return ""
}

// usageError marks a bad command line found by a command.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

// ctlError maps an error to ctl's exit codes and messages.
func ctlError(err error) error {
	if err == nil {
		return nil
	}
	var (
		ue *control.UnreachableError
		ae *control.APIError
		us *usageError
	)
	switch {
	case errors.As(err, &us):
		return cli.Exit("paddock ctl: "+us.msg, ExitUsage)
	case errors.As(err, &ue):
		how := ""
		if ue.How != "" {
			how = " (" + ue.How + ")"
		}
		return cli.Exit(fmt.Sprintf("paddock ctl: cannot reach the control socket %s%s: %v\n"+
			"Is the master running? Name its socket with --socket or PADDOCK_CTL_SOCKET (the master's control_socket / --ctl-socket),\n"+
			"or its pidfile with --pidfile or PADDOCK_PIDFILE.", ue.Path, how, ue.Err), ExitNoReach)
	case errors.As(err, &ae):
		var b strings.Builder
		b.WriteString("paddock ctl: " + ae.Message)
		for _, p := range ae.Details {
			b.WriteString("\n" + formatProblem(p))
		}
		return cli.Exit(b.String(), ExitFailed)
	}
	return cli.Exit("paddock ctl: "+err.Error(), ExitFailed)
}

// formatProblem prints a problem as check does: file:line: [section]: message.
func formatProblem(p control.ConfigProblem) string {
	var b strings.Builder
	if p.File != "" {
		b.WriteString(p.File)
		if p.Line > 0 {
			b.WriteString(":" + strconv.Itoa(p.Line))
		}
		b.WriteString(": ")
	}
	if p.Section != "" {
		b.WriteString("[" + p.Section + "]: ")
	}
	b.WriteString(p.Message)
	return b.String()
}

// done reports whether a command has nothing more to print: it failed,
// or --json printed the answer.
func (r *ctlRun) done(err error) bool { return err != nil || r.json }

func (r *ctlRun) table() *tabwriter.Writer {
	return tabwriter.NewWriter(r.out, 0, 0, 2, ' ', 0)
}

func ctlStatus(r *ctlRun) error {
	st, err := r.client.Status(r.c.Context)
	if r.done(err) {
		return err
	}
	tw := r.table()
	fmt.Fprintf(tw, "pid:\t%d\n", st.Pid)
	fmt.Fprintf(tw, "version:\t%s\n", st.Version)
	fmt.Fprintf(tw, "state:\t%s\n", st.State)
	fmt.Fprintf(tw, "uptime:\t%s\n", seconds(st.UptimeS))
	fmt.Fprintf(tw, "generation:\t%d\n", st.Generation)
	sum := st.Config.SHA256
	if len(sum) > 12 {
		sum = sum[:12]
	}
	fmt.Fprintf(tw, "config:\t%s (sha256 %s)\n", st.Config.Path, sum)
	w := st.Workers
	fmt.Fprintf(tw, "workers:\t%d ready, %d booting, %d draining (target %d)\n", w.Ready, w.Booting, w.Draining, w.Target)
	var ls []string
	for _, l := range st.Listeners {
		ls = append(ls, listenerText(l))
	}
	fmt.Fprintf(tw, "listeners:\t%s\n", strings.Join(ls, ", "))
	switch lr := st.LastReload; {
	case lr == nil:
		fmt.Fprintf(tw, "last reload:\tnone\n")
	case lr.OK:
		fmt.Fprintf(tw, "last reload:\tok at %s\n", lr.At.Local().Format(time.DateTime))
	default:
		fmt.Fprintf(tw, "last reload:\tFAILED at %s: %s\n", lr.At.Local().Format(time.DateTime), strings.ReplaceAll(lr.Error, "\n", "; "))
	}
	return tw.Flush()
}

func listenerText(l control.Listener) string {
	s := l.Addr + " (" + l.Network
	if l.TLS {
		s += ", tls"
	}
	return s + ")"
}

// seconds renders a duration in seconds for people: 1h2m3s, 4.2s, 0.35s.
func seconds(s float64) string {
	d := time.Duration(s * float64(time.Second))
	switch {
	case d >= time.Minute:
		return d.Round(time.Second).String()
	case d >= time.Second:
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(10 * time.Millisecond).String()
}

// bytesText renders a size as 12.3M.
func bytesText(n int64) string {
	if n <= 0 {
		return "-"
	}
	const unit = 1024
	if n < unit {
		return strconv.FormatInt(n, 10)
	}
	v, suffix := float64(n), ""
	for _, s := range []string{"K", "M", "G", "T"} {
		if v < unit {
			break
		}
		v, suffix = v/unit, s
	}
	return strconv.FormatFloat(v, 'f', 1, 64) + suffix
}

func ctlWorkersList(r *ctlRun) error {
	workers, err := r.client.Workers(r.c.Context)
	if r.done(err) {
		return err
	}
	tw := r.table()
	fmt.Fprintln(tw, "ID\tPID\tGEN\tSTATE\tAGE\tREQUESTS\tIN-FLIGHT\tRSS\tHEARTBEAT")
	now := time.Now()
	for _, w := range workers {
		fmt.Fprintf(tw, "%d\t%d\t%d\t%s\t%s\t%d\t%d\t%s\t%s ago\n", w.ID, w.Pid, w.Generation, w.State,
			seconds(now.Sub(w.StartedAt).Seconds()), w.Requests, w.InFlight, bytesText(w.RSSBytes), seconds(w.LastHeartbeatS))
	}
	return tw.Flush()
}

// ctlWorkersChange is add, remove (N optional, default 1) and set (N
// required): change is the client's method.
func ctlWorkersChange(change func(*control.Client, context.Context, int) (int, int, error), optional bool) func(*ctlRun) error {
	return func(r *ctlRun) error {
		n := 1
		switch {
		case len(r.args) == 1:
			v, err := strconv.Atoi(r.args[0])
			if err != nil || v < 1 {
				return &usageError{fmt.Sprintf("workers %s: N must be a positive integer, not %q", r.c.Command.Name, r.args[0])}
			}
			n = v
		case !optional:
			return &usageError{fmt.Sprintf("workers %s: need N", r.c.Command.Name)}
		}
		previous, target, err := change(r.client, r.c.Context, n)
		if r.done(err) {
			return err
		}
		fmt.Fprintf(r.out, "workers: target %d -> %d\n", previous, target)
		return nil
	}
}

func ctlWorkersKill(r *ctlRun) error {
	if len(r.args) != 1 {
		return &usageError{"workers kill: need the worker's PID"}
	}
	pid, err := strconv.Atoi(r.args[0])
	if err != nil || pid < 1 {
		return &usageError{fmt.Sprintf("workers kill: PID must be a positive integer, not %q", r.args[0])}
	}
	force := r.trailing["force"] || r.c.Bool("force")
	if err := r.client.KillWorker(r.c.Context, pid, force); r.done(err) {
		return err
	}
	if force {
		fmt.Fprintf(r.out, "worker %d: killed (SIGKILL); the master replaces it\n", pid)
	} else {
		fmt.Fprintf(r.out, "worker %d: stopping gracefully (SIGTERM); the master replaces it\n", pid)
	}
	return nil
}

func ctlReload(r *ctlRun) error {
	res, err := r.client.Reload(r.c.Context)
	if r.done(err) {
		return err
	}
	changed := "nothing"
	if len(res.Changed) > 0 {
		changed = strings.Join(res.Changed, ", ")
	}
	fmt.Fprintf(r.out, "reloaded: generation %d ready in %s; changed: %s\n", res.Generation, seconds(res.DurationS), changed)
	return nil
}

func ctlUpgrade(r *ctlRun) error {
	res, err := r.client.Upgrade(r.c.Context)
	if r.done(err) {
		return err
	}
	fmt.Fprintf(r.out, "upgraded: pid %d (%s) -> pid %d (%s)\n", res.OldPid, res.OldVersion, res.NewPid, res.NewVersion)
	return nil
}

func ctlStop(r *ctlRun) error {
	graceful, grace := !r.c.Bool("now"), time.Duration(0)
	if g := r.c.Duration("grace"); r.c.IsSet("grace") {
		if g <= 0 {
			return &usageError{fmt.Sprintf("stop: --grace %s: want a positive duration", g)}
		}
		if !graceful {
			return &usageError{"stop: --grace is for a graceful stop, not with --now"}
		}
		grace = g
	}
	if err := r.client.Stop(r.c.Context, graceful, grace); r.done(err) {
		return err
	}
	mode := control.StopGraceful
	if !graceful {
		mode = control.StopImmediate
	}
	fmt.Fprintf(r.out, "master stopping (%s)\n", mode)
	return nil
}

func ctlConfigShow(r *ctlRun) error {
	if r.c.Bool("raw") || r.trailing["raw"] || lineageBool(r.c, "raw") {
		b, err := r.client.ConfigFile(r.c.Context)
		if r.done(err) {
			return err
		}
		_, err = r.out.Write(b)
		return err
	}
	view, err := r.client.Config(r.c.Context)
	if r.done(err) {
		return err
	}
	fmt.Fprintf(r.out, "config: %s\n", view.Path)
	tw := r.table()
	fmt.Fprintln(tw, "SETTING\tVALUE\tSOURCE\tWHERE")
	for _, name := range slices.Sorted(maps.Keys(view.Settings)) {
		v := view.Settings[name]
		val := v.Value
		if val == "" {
			val = `""`
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", name, val, v.Source, v.Where)
	}
	return tw.Flush()
}

func lineageBool(c *cli.Context, name string) bool {
	for _, x := range c.Lineage() {
		if x.Command != nil && x.Bool(name) {
			return true
		}
	}
	return false
}

func ctlConfigCheck(r *ctlRun) error {
	if len(r.args) != 1 {
		return &usageError{"config check: need the FILE to check"}
	}
	path, err := filepath.Abs(r.args[0])
	if err != nil {
		return &usageError{fmt.Sprintf("config check: %q: %v", r.args[0], err)}
	}
	res, err := r.client.CheckConfig(r.c.Context, path)
	if r.done(err) {
		return err
	}
	for _, w := range res.Warnings {
		fmt.Fprintf(r.c.App.ErrWriter, "%s (warning)\n", formatProblem(w))
	}
	fmt.Fprintf(r.out, "%s: ok\n", res.Path)
	return nil
}

func ctlPipeline(r *ctlRun) error {
	format := r.c.String("format")
	switch format {
	case "":
		format = "text"
		if r.json {
			format = "json"
		}
	case "text", "json", "dot":
	default:
		return &usageError{fmt.Sprintf("pipeline: --format %q: want text, json or dot", format)}
	}
	b, err := r.client.Pipeline(r.c.Context, format)
	if r.done(err) {
		return err
	}
	_, err = r.out.Write(b)
	if err == nil && !bytes.HasSuffix(b, []byte("\n")) {
		fmt.Fprintln(r.out)
	}
	return err
}

func ctlReopen(r *ctlRun) error {
	if err := r.client.ReopenLogs(r.c.Context); r.done(err) {
		return err
	}
	fmt.Fprintln(r.out, "logs reopened")
	return nil
}

func ctlListeners(r *ctlRun) error {
	listeners, err := r.client.Listeners(r.c.Context)
	if r.done(err) {
		return err
	}
	tw := r.table()
	fmt.Fprintln(tw, "BIND\tNETWORK\tADDR\tTLS")
	for _, l := range listeners {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%v\n", l.Bind, l.Network, l.Addr, l.TLS)
	}
	return tw.Flush()
}

func ctlUpstreams(r *ctlRun) error {
	resp, err := r.client.Upstreams(r.c.Context)
	if r.done(err) {
		return err
	}
	if len(resp.Proxies) == 0 {
		fmt.Fprintln(r.out, "no proxy app in the running pipeline")
	} else {
		tw := r.table()
		fmt.Fprintln(tw, "SECTION\tUPSTREAM\tWORKER\tSTATE\tFAILS\tACTIVE\tCHECK\tREQUESTS\tERRORS")
		for _, px := range resp.Proxies {
			section := px.Section + " (" + px.Balance + ")"
			for _, up := range px.Upstreams {
				for _, w := range up.Workers {
					check := w.Check
					if w.CheckError != "" {
						check += ": " + strings.ReplaceAll(w.CheckError, "\n", " ")
					}
					fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%d\t%d\t%s\t%d\t%d\n", section, up.URL, w.Pid, upstreamStateText(w),
						w.Failures, w.Active, check, w.Requests, w.Errors)
				}
			}
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	for _, w := range resp.Workers {
		if !w.Answered {
			fmt.Fprintf(r.out, "worker %d (id %d): %s\n", w.Pid, w.ID, w.Error)
		}
	}
	return nil
}

// upstreamStateText is up, or down with why and for how long.
func upstreamStateText(w control.UpstreamState) string {
	switch {
	case w.State != "down":
		return w.State
	case w.Reason == "health_check":
		return "down (health check)"
	case w.Reason == "failures" && w.DownForS > 0:
		return "down (failures, " + seconds(w.DownForS) + " left)"
	case w.Reason == "failures":
		return "down (failures, trial next)"
	}
	return "down"
}
