package man

import (
	"fmt"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"

	"paddock/worker"
)

// EnvVar documents an environment variable that no flag declares: one
// paddock reads itself, or sets for its own processes.
type EnvVar struct {
	// Name is the variable; a name ending in "*" is a family
	// (PADDOCK_WORKER_*).
	Name string
	// Text is the Markdown of its description.
	Text string
}

// Environ lists the variables paddock reads or sets besides the PADDOCK_*
// variables of its flags (those are derived from the app and
// worker.Known()). TestManPages in internal/command checks this list against
// the variable names in the code, both ways: a variable the code reads
// must be here or on a flag, and every one here must still be in the code.
var Environ = []EnvVar{
	{"WEB_CONCURRENCY", "" /* from worker.Known()'s FallbackEnvs */},
	{"FORWARDED_ALLOW_IPS", "" /* from worker.Known()'s FallbackEnvs */},
	{"LISTEN_FDS", "systemd socket activation (sd_listen_fds(3)): the number of sockets passed from descriptor 3 on. " +
		"When no bind, host or port is set by a flag, the environment or the file, **paddock serve** serves on these sockets " +
		"instead of the default bind; a bind of `systemd:NAME` or `fd://N` picks one of them. " +
		"Read once, then removed from the environment so workers and upgraded masters never take them by mistake."},
	{"LISTEN_PID", "systemd socket activation: the sockets are paddock's only when this is its pid."},
	{"LISTEN_FDNAMES", "systemd socket activation: colon-separated names of the passed sockets (`FileDescriptorName=`), used by `systemd:NAME` binds."},
	{"NOTIFY_SOCKET", "systemd's notification socket (sd_notify(3)), set for `Type=notify` and `Type=notify-reload` units. " +
		"The master reports `READY=1` once its workers serve, `RELOADING=1` then `READY=1` around a reload, `STOPPING=1` on a stop and, " +
		"on a binary upgrade, the new master's pid (`MAINPID=`). Workers do not inherit it."},
	{"WATCHDOG_USEC", "systemd's `WatchdogSec=`: the master sends `WATCHDOG=1` every half of it while its supervision loop runs, " +
		"so systemd restarts a master that hangs."},
	{"WATCHDOG_PID", "the process `WATCHDOG_USEC` is meant for; paddock sets it to its own pid for the new master of an upgrade, which takes the watchdog over."},
	{"RUNTIME_DIRECTORY", "set by systemd's `RuntimeDirectory=`: without **control_socket**, the control socket is `$RUNTIME_DIRECTORY/ctl.sock` (with several directories, the first)."},
	{"XDG_RUNTIME_DIR", "a user session's runtime directory: without **control_socket** or `$RUNTIME_DIRECTORY`, the control socket is `$XDG_RUNTIME_DIR/paddock/ctl.sock`."},
	{"SOURCE_DATE_EPOCH", "**paddock man**: the date on the page's title line, in seconds since 1970 (reproducible builds); unset or empty, the title line has no date."},
	{"PADDOCK_WORKER_*", "set by the master for each worker process it starts (its id, generation, sockets, settings and the descriptor of its channel to the master); " +
		"internal, and removed from the environment of anything else the master starts. Do not set them: a process that finds them believes it is a worker."},
	{"TABLEFLIP_HAS_PARENT_7DIU3", "set by the master for the new master of a binary upgrade (cloudflare/tableflip), so it inherits the sockets; internal."},
}

// envUse is one way a variable is read: a flag that declares it.
type envUse struct {
	command string   // "serve", "ctl"
	flag    string   // its main name
	others  []string // the flag's other variables, which win when set first
	usage   string
	def     string
	setting *worker.Setting
}

// environment is the ENVIRONMENT section's Markdown: every variable the
// app's flags declare (EnvVars, hidden commands included), the fallbacks
// of worker.Known(), then Environ.
func environment(app *cli.App) ([]string, error) {
	settings := make(map[string]*worker.Setting)
	fallback := make(map[string][]*worker.Setting)
	for _, st := range worker.Known() {
		for _, e := range st.Envs {
			settings[e] = &st
		}
		for _, e := range st.FallbackEnvs {
			fallback[e] = append(fallback[e], &st)
		}
	}

	uses := make(map[string][]envUse)
	var walk func(cmds []*cli.Command, parent string)
	walk = func(cmds []*cli.Command, parent string) {
		for _, c := range cmds {
			path := strings.TrimSpace(parent + " " + c.Name)
			for _, f := range c.Flags {
				df, ok := f.(cli.DocGenerationFlag)
				if !ok {
					continue
				}
				envs := df.GetEnvVars()
				for i, e := range envs {
					u := envUse{command: path, flag: f.Names()[0], others: envs[:i], usage: df.GetUsage()}
					// The setting's own flag; ctl --socket reads
					// PADDOCK_CTL_SOCKET too, but is not the setting.
					if st := settings[e]; st != nil && slices.Contains(st.Flags, u.flag) {
						u.setting = st
					}
					if df.TakesValue() {
						u.def = df.GetDefaultText()
						if u.def == "" {
							u.def = df.GetValue()
						}
					}
					uses[e] = append(uses[e], u)
				}
			}
			walk(c.Subcommands, path)
		}
	}
	walk(app.Commands, "")
	// A setting whose variable no flag declares is still read by
	// worker.Resolve.
	for e, st := range settings {
		if _, ok := uses[e]; !ok {
			uses[e] = []envUse{{command: "serve", usage: st.Usage, def: st.Default, setting: st}}
		}
	}

	var out []string
	for _, name := range sortedKeys(uses) {
		var parts []string
		for _, u := range uses[name] {
			var s string
			if u.flag != "" {
				s = "**" + inline(app.Name+" "+u.command+" --"+u.flag) + "**"
			} else {
				s = "**" + inline(app.Name+" "+u.command) + "**"
			}
			if u.setting != nil {
				s += ", the " + code(u.setting.Name) + " setting"
			}
			s += ": " + inline(u.usage)
			if u.def != "" && u.def != `""` {
				s += " (default: " + inline(u.def) + ")"
			}
			if len(u.others) > 0 {
				s += "; " + strings.Join(u.others, " or ") + " wins when both are set"
			}
			parts = append(parts, s+".")
		}
		out = append(out, "**"+inline(name)+"**", ":   "+strings.Join(parts, " "), "")
	}
	for _, v := range Environ {
		text := v.Text
		if sts, ok := fallback[v.Name]; ok {
			var parts []string
			for _, st := range sts {
				parts = append(parts, fmt.Sprintf("the %s setting when neither %s, %s nor the file sets it",
					code(st.Name), code("--"+st.Flags[0]), strings.Join(st.Envs, ", ")))
			}
			text = strings.Join(parts, "; ") + " (gunicorn and Heroku's convention). " + text
		}
		if text == "" {
			return nil, fmt.Errorf("man: environment variable %s has no description", v.Name)
		}
		out = append(out, "**"+inline(v.Name)+"**", ":   "+strings.TrimSpace(text), "")
	}
	return out, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// EnvNames returns every variable the ENVIRONMENT section of app's page
// documents: the flags', worker.Known()'s and Environ's (a family as its
// prefix, ending in "*").
func EnvNames(app *cli.App) []string {
	seen := make(map[string]bool)
	var walk func(cmds []*cli.Command)
	walk = func(cmds []*cli.Command) {
		for _, c := range cmds {
			for _, f := range c.Flags {
				if df, ok := f.(cli.DocGenerationFlag); ok {
					for _, e := range df.GetEnvVars() {
						seen[e] = true
					}
				}
			}
			walk(c.Subcommands)
		}
	}
	walk(app.Commands)
	for _, st := range worker.Known() {
		for _, e := range append(st.Envs, st.FallbackEnvs...) {
			seen[e] = true
		}
	}
	for _, v := range Environ {
		seen[v.Name] = true
	}
	return sortedKeys(seen)
}
