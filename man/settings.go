package man

import (
	"strings"

	"paddock/worker"
)

// settingsList is the Markdown of every [server:main] setting, from
// worker.Known(): name, what it does, default, flag, environment
// variables and what a reload does with it (worker.Setting.ReloadText:
// the settings table says it, the reload code acts on it).
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
		b.WriteString(". On reload: " + st.ReloadText() + ".")
		out = append(out, "**"+inline(st.Name)+"**", ":   "+b.String(), "")
	}
	return out
}
