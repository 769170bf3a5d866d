package man

import (
	"strings"

	"paddock/worker"
)

// What a reload (HUP, ctl reload, an edit of the config) does with a
// changed setting; worker/control.go's reload() is the code this
// describes. A setting not in reloadNotes is one the workers are started
// with: any Settings field that sameProcessSettings compares. A changed
// one rolls the workers, which is reloadRoll.
const (
	reloadRoll = "rolls the workers: each new worker serves before an old one drains"
	reloadBind = "applied live: added sockets are opened first (one that cannot be opened fails the reload and changes nothing), " +
		"the workers roll onto the new set, and a removed socket stops listening once no old worker is left"
	reloadRestart = "needs a restart or an upgrade: the running value is kept and the reload answer names the setting \"(needs restart)\""
)

// reloadNotes are the settings a reload does not simply roll the workers
// for. TestReloadNotes checks every name is still a setting.
var reloadNotes = map[string]string{
	"bind":    reloadBind,
	"host":    reloadBind,
	"port":    reloadBind,
	"workers": "applied live: workers are started or stopped (the oldest first, gracefully) to the new count; a count changed at run time (TTIN, TTOU, ctl workers) survives edits that leave workers alone; 0 needs a restart",
	"backlog": "applied live to the open sockets",

	"reuse_port":      reloadRestart,
	"control_socket":  reloadRestart,
	"watch_config":    reloadRestart,
	"upgrade_timeout": reloadRestart,
	"errorlog":        reloadRestart,
	"metrics_bind":    reloadRestart,

	"pidfile":  "needs a restart or an upgrade: the running master keeps the pidfile it wrote",
	"user":     "needs a restart or an upgrade: workers are started with the user and group the master resolved when it started",
	"group":    "needs a restart or an upgrade: workers are started with the user and group the master resolved when it started",
	"loglevel": reloadRoll + "; the master keeps its own level until a restart",
	"certfile": reloadRoll + "; new content in the files under the same names is loaded in place by every reload, without new workers " +
		"(the master loads the pair first: one that does not load fails the reload and the workers keep serving the old certificate)",
	"keyfile": reloadRoll + "; new content in the files under the same names is loaded in place by every reload, without new workers " +
		"(the master loads the pair first: one that does not load fails the reload and the workers keep serving the old certificate)",
	"protocols":             reloadRoll,
	"proxy_protocol":        reloadRoll + "; connections already open keep the addresses read when they were accepted",
	"proxy_allow_ips":       reloadRoll + "; connections already open keep the addresses read when they were accepted",
	"forwarded_allow_ips":   reloadRoll,
	"forwarded_header":      reloadRoll,
	"secure_scheme_headers": reloadRoll,
}

// reloadNote says what a reload does with a changed value of setting name.
func reloadNote(name string) string {
	if n, ok := reloadNotes[name]; ok {
		return n
	}
	return reloadRoll
}

// settingsList is the Markdown of every [server:main] setting, from
// worker.Known(): name, what it does, default, flag, environment
// variables and what a reload does with it.
func settingsList() []string {
	var out []string
	for _, st := range worker.Known() {
		var b strings.Builder
		b.WriteString(inline(st.Usage))
		b.WriteString(". Default: ")
		if st.Default == "" {
			b.WriteString("unset")
		} else {
			b.WriteString(code(st.Default))
		}
		flags := make([]string, len(st.Flags))
		for i, f := range st.Flags {
			if len(f) == 1 {
				flags[i] = code("-" + f)
			} else {
				flags[i] = code("--" + f)
			}
		}
		b.WriteString(". Flag: " + strings.Join(flags, ", "))
		envs := make([]string, len(st.Envs))
		for i, e := range st.Envs {
			envs[i] = code(e)
		}
		b.WriteString("; environment: " + strings.Join(envs, ", "))
		if len(st.FallbackEnvs) > 0 {
			fb := make([]string, len(st.FallbackEnvs))
			for i, e := range st.FallbackEnvs {
				fb[i] = code(e)
			}
			b.WriteString(", else (below the file) " + strings.Join(fb, ", "))
		}
		b.WriteString(". On reload: " + reloadNote(st.Name) + ".")
		out = append(out, "**"+inline(st.Name)+"**", ":   "+b.String(), "")
	}
	return out
}
