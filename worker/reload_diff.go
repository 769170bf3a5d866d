package worker

// What differs between the running config and a reloaded one, for a
// reload's answer and for what it does: the settings that changed, kept
// or roll the workers, the sections of the file, and the error a broken
// config is answered with.

import (
	"bytes"
	"errors"
	"maps"
	"reflect"
	"slices"
	"strings"

	"paddock/control"
	"paddock/pipeline"
)

// joinDistinct joins the errors that are not nil, once each: a settings
// load and a pipeline load failing on the same unreadable file report it
// once.
func joinDistinct(errs ...error) error {
	var out []error
	for _, err := range errs {
		if err != nil && !slices.ContainsFunc(out, func(e error) bool { return e.Error() == err.Error() }) {
			out = append(out, err)
		}
	}
	switch len(out) {
	case 0:
		return nil
	case 1:
		return out[0]
	}
	return errors.Join(out...)
}

// keepRestartSettings puts back into ns the running value of every
// setting whose policy is ReloadRestart and that ns changes, with its
// origin, and returns their names in table order.
func keepRestartSettings(running, ns *Settings) []string {
	var kept []string
	for _, st := range table {
		if st.Reload != ReloadRestart {
			continue
		}
		old, v := st.fieldOf(running), st.fieldOf(ns)
		if reflect.DeepEqual(old.Interface(), v.Interface()) {
			continue
		}
		v.Set(old)
		if ns.Origins != nil {
			if o, ok := running.Origins[st.Name]; ok {
				ns.Origins[st.Name] = o
			} else {
				delete(ns.Origins, st.Name)
			}
		}
		kept = append(kept, st.Name)
	}
	return kept
}

// hasServerSection reports whether the config file's bytes have a
// [server:*] section (true when they do not parse: the load decides).
func hasServerSection(path string, data []byte) bool {
	if data == nil {
		return true
	}
	f, err := pipeline.Parse(path, data, nil)
	if err != nil {
		return true
	}
	for _, sec := range f.Sections {
		if isServerSection(sec.Name) {
			return true
		}
	}
	return false
}

func isServerSection(name string) bool {
	return strings.HasPrefix(name, "server:") || strings.HasPrefix(name, "server ")
}

// changes names what a reload to ns and next changes against the running
// settings and config, for its answer and log: the settings whose value
// differs, those kept until a restart, certfile when only the TLS files'
// contents changed, then the sections of the config file that differ, or
// "pipeline" when only a file the config references did.
func (a *Arbiter) changes(ns *Settings, next runningConfig, restart []string) []string {
	prev := a.cfg
	changed := changedSettings(a.settings, ns)
	for _, name := range restart {
		changed = append(changed, name+" (needs restart)")
	}
	// New contents of certfile and keyfile under the same names need no
	// new workers: an in-place reload carries the pair and each worker
	// swaps its certificate. New names roll the workers, as any setting
	// of theirs does; new workers get the pair at spawn.
	if next.tlsDigest != prev.tlsDigest && !slices.Contains(changed, "certfile") && !slices.Contains(changed, "keyfile") {
		changed = append(changed, "certfile")
	}
	if sections := changedSections(a.opts.ConfigPath, prev.data, next.data); len(sections) > 0 {
		changed = append(changed, sections...)
	} else if (next.sum != prev.sum || next.digest != prev.digest) && (len(changed) == 0 || prev.graph == nil || !bytes.Equal(prev.graph, next.graph)) {
		// A file the config references changed (config:, a factory's).
		changed = append(changed, "pipeline")
	}
	return changed
}

// changedSettings names the settings whose value differs, sorted.
func changedSettings(old, new *Settings) []string {
	out := []string{}
	if old == new {
		return out
	}
	names := make(map[string]bool)
	for k := range old.Origins {
		names[k] = true
	}
	for k := range new.Origins {
		names[k] = true
	}
	for _, k := range slices.Sorted(maps.Keys(names)) {
		if old.Origins[k].Value != new.Origins[k].Value {
			out = append(out, k)
		}
	}
	return out
}

// changedSections names the sections of the config file whose options
// differ between old and new, "[name]" in the new file's order, then
// removed ones; [DEFAULT] counts as a section. Server sections are left
// out: their changes are named by setting. Nil when either does not
// parse.
func changedSections(path string, old, new []byte) []string {
	if old == nil || new == nil || bytes.Equal(old, new) {
		return nil
	}
	of, err := pipeline.Parse(path, old, nil)
	if err != nil {
		return nil
	}
	nf, err := pipeline.Parse(path, new, nil)
	if err != nil {
		return nil
	}
	text := func(s *pipeline.Section) string {
		if s == nil {
			return ""
		}
		var b strings.Builder
		for _, o := range s.Options {
			b.WriteString(o.Key + "=" + o.Value + "\n")
		}
		return b.String()
	}
	isServer := isServerSection
	var out []string
	if text(of.Defaults) != text(nf.Defaults) {
		out = append(out, "[DEFAULT]")
	}
	for _, s := range nf.Sections {
		if isServer(s.Name) {
			continue
		}
		switch o := of.Section(s.Name); {
		case o == nil:
			out = append(out, "["+s.Name+"] (added)")
		case text(o) != text(s):
			out = append(out, "["+s.Name+"]")
		}
	}
	for _, s := range of.Sections {
		if !isServer(s.Name) && nf.Section(s.Name) == nil {
			out = append(out, "["+s.Name+"] (removed)")
		}
	}
	return out
}

// sameProcessSettings reports whether workers started with old serve new
// as they are: only settings whose reload policy is not ReloadRoll
// differ (the master's own: worker count, backlog, restart-only ones).
func sameProcessSettings(old, new *Settings) bool {
	if old == new {
		return true
	}
	a, b := *old, *new
	a.Origins, b.Origins = nil, nil
	for _, st := range table {
		if st.Reload != ReloadRoll {
			st.fieldOf(&b).Set(st.fieldOf(&a))
		}
	}
	return reflect.DeepEqual(a, b)
}

// configError turns a load error into the 422 the control socket
// answers: one problem per pipeline error, located at file:line.
func configError(err error) error {
	ce := &control.ConfigError{}
	var walk func(error)
	walk = func(err error) {
		var (
			list pipeline.ErrorList
			pe   *pipeline.Error
		)
		switch {
		case errors.As(err, &list):
			for _, e := range list {
				walk(e)
			}
			return
		case errors.As(err, &pe) && pe.Class != "":
			ce.Problems = append(ce.Problems, problem(pe))
			return
		}
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				walk(e)
			}
			return
		}
		if errors.As(err, &pe) {
			ce.Problems = append(ce.Problems, problem(pe))
			return
		}
		ce.Problems = append(ce.Problems, control.ConfigProblem{Message: err.Error()})
	}
	walk(err)
	return ce
}

func problem(e *pipeline.Error) control.ConfigProblem {
	msg := strings.TrimPrefix(e.Msg, "Error in file "+e.Pos.File+": ")
	return control.ConfigProblem{File: e.Pos.File, Line: e.Pos.Line, Section: e.Section, Message: msg}
}
