package control

import (
	"bytes"
	"encoding/json"
	"regexp"
	"slices"
	"strings"
)

// Redacted stands for a secret in what the control API shows: GET
// /v1/config (both formats), GET /v1/pipeline and error messages. Only
// the master's uid and root may ask, and they can read the file anyway;
// the point is that output pasted into a ticket or a CI log carries no
// password, token, private key or URL credential.
const Redacted = "[redacted]"

// secretWords mark an option, variable or header name whose value is a
// secret (after lower-casing, with - and . read as _).
var secretWords = []string{"password", "passwd", "passphrase", "secret", "token", "credential",
	"apikey", "api_key", "private_key", "privatekey", "authorization", "cookie", "session_key"}

// secretName reports whether name looks like it holds a secret. Names of
// files (htpasswd, tls_key_file, keyfile) do not: a path is no secret,
// and hiding it would hide where the secret is.
func secretName(name string) bool {
	n := strings.ToLower(strings.TrimSpace(name))
	n = strings.NewReplacer("-", "_", ".", "_", " ", "_").Replace(n)
	if n == "htpasswd" || strings.HasSuffix(n, "file") || strings.HasSuffix(n, "_path") || strings.HasSuffix(n, "_dir") {
		return false
	}
	for _, w := range secretWords {
		if strings.Contains(n, w) {
			return true
		}
	}
	return n == "key" || n == "pass" || n == "pwd" || strings.HasSuffix(n, "_key") ||
		strings.HasSuffix(n, "_pass") || strings.HasSuffix(n, "_pwd")
}

// urlPassword matches the password of a URL's user info
// (scheme://user:password@host), as url.URL.Redacted hides it.
var urlPassword = regexp.MustCompile(`(?i)\b([a-z][a-z0-9+.\-]*://[^\s/?#@:]*):[^\s/?#@]*@`)

// namedValue matches NAME=VALUE and NAME: VALUE inside a value (an
// environment line, a header, a query string); the value runs to the
// end of the item (, ; & or the line).
var namedValue = regexp.MustCompile(`([A-Za-z0-9_.\-]+)(\s*[=:]\s*)("[^"]*"|'[^']*'|[^,;&\r\n]*)`)

// lineRedactor redacts one line of a value at a time; it remembers
// whether it is inside a PEM private key block. known are secret values
// found elsewhere in the document (a [DEFAULT] password), hidden wherever
// they were interpolated.
type lineRedactor struct {
	inKey bool
	known []string
}

func (r *lineRedactor) line(s string) string {
	for _, k := range r.known {
		s = strings.ReplaceAll(s, k, Redacted)
	}
	if r.inKey {
		if strings.Contains(s, "-----END") {
			r.inKey = false
			return s
		}
		return leadingSpace(s) + Redacted
	}
	if strings.Contains(s, "-----BEGIN") && strings.Contains(s, "PRIVATE KEY") {
		r.inKey = !strings.Contains(s, "-----END")
		if !r.inKey { // a whole key on one line
			return leadingSpace(s) + Redacted
		}
		return s
	}
	return redactValue(s)
}

// redactValue hides URL passwords and the values of secret-looking
// NAME=VALUE items in s.
func redactValue(s string) string {
	if strings.Contains(s, "://") {
		s = urlPassword.ReplaceAllString(s, "${1}:"+Redacted+"@")
	}
	if !strings.ContainsAny(s, "=:") {
		return s
	}
	return namedValue.ReplaceAllStringFunc(s, func(m string) string {
		sub := namedValue.FindStringSubmatch(m)
		name, sep, val := sub[1], sub[2], sub[3]
		if secretName(name) && strings.TrimSpace(val) != "" && val != Redacted {
			return name + sep + Redacted
		}
		if val == "" {
			return m
		}
		// "env = DB_PASSWORD=x": the item may hold a secret item.
		return name + sep + redactValue(val)
	})
}

func leadingSpace(s string) string { return s[:len(s)-len(strings.TrimLeft(s, " \t"))] }

// redactINI redacts a paste.deploy INI file line by line: the value of an
// option whose name looks secret (with its continuation lines), and in
// every other value, comment included, URL passwords, secret NAME=VALUE
// items and PEM private keys.
func redactINI(b []byte) []byte {
	var (
		out        bytes.Buffer
		secretCont bool // continuation lines of a secret option
		r          lineRedactor
	)
	for _, raw := range strings.SplitAfter(string(b), "\n") {
		body := strings.TrimRight(raw, "\r\n")
		eol := raw[len(body):]
		trimmed := strings.TrimSpace(body)
		switch {
		case trimmed == "":
		case body[0] == ' ' || body[0] == '\t':
			if secretCont {
				body = leadingSpace(body) + Redacted
			} else {
				body = r.line(body)
			}
		case trimmed[0] == '[':
			secretCont, r = false, lineRedactor{}
		case trimmed[0] == '#' || trimmed[0] == ';':
			// A commented-out option is still the secret it was.
			body, _ = redactOption(body, &lineRedactor{})
		default:
			r = lineRedactor{}
			body, secretCont = redactOption(body, &r)
		}
		out.WriteString(body)
		out.WriteString(eol)
	}
	return out.Bytes()
}

// redactOption redacts "name = value" (or name: value) when name looks
// secret, and the secrets in value otherwise; secret says which.
func redactOption(line string, r *lineRedactor) (string, bool) {
	i := strings.IndexAny(line, "=:")
	if i < 0 || !secretName(strings.TrimLeft(line[:i], "#; \t")) {
		return r.line(line), false
	}
	if strings.TrimSpace(line[i+1:]) == "" {
		return line, true // the value, if any, is on continuation lines
	}
	return line[:i+1] + " " + Redacted, true
}

// textOption is one "name = value" line of the text graph.
var textOption = regexp.MustCompile(`^(\s*)([^\s=]+) = (.*)$`)

// redactText redacts the text and dot graphs line by line; known are
// secret values to hide wherever they appear (see secretValues).
func redactText(b []byte, known []string) []byte {
	r := lineRedactor{known: known}
	lines := strings.SplitAfter(string(b), "\n")
	for i, raw := range lines {
		body := strings.TrimRight(raw, "\r\n")
		eol := raw[len(body):]
		if m := textOption.FindStringSubmatch(body); m != nil && secretName(m[2]) {
			body = m[1] + m[2] + " = " + Redacted
		} else {
			body = r.line(body)
		}
		lines[i] = body + eol
	}
	return []byte(strings.Join(lines, ""))
}

// redactJSON redacts a JSON document: string members whose name looks
// secret, and secrets inside every other string. It returns b itself when
// nothing changed (or b is not JSON), so the canonical form is kept.
func redactJSON(b []byte) []byte {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return redactText(b, nil)
	}
	changed := false
	known := collectSecrets(v, nil)
	v = redactAny(v, false, known, &changed)
	if !changed {
		return b
	}
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	enc.SetEscapeHTML(false)
	if bytes.Contains(b, []byte("\n  ")) {
		enc.SetIndent("", "  ")
	}
	if err := enc.Encode(v); err != nil {
		return redactText(b, nil)
	}
	if !bytes.HasSuffix(b, []byte("\n")) {
		return bytes.TrimSuffix(out.Bytes(), []byte("\n"))
	}
	return out.Bytes()
}

func redactAny(v any, secret bool, known []string, changed *bool) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = redactAny(e, secretName(k), known, changed)
		}
	case []any:
		for i, e := range x {
			x[i] = redactAny(e, secret, known, changed)
		}
	case string:
		var s string
		if secret && x != "" {
			s = Redacted
		} else {
			s = redactLines(x, known)
		}
		if s != x {
			*changed = true
		}
		return s
	}
	return v
}

// minKnown is the shortest secret value hidden wherever it appears: a
// shorter one ("1", "yes") would blank out unrelated text.
const minKnown = 4

// secretValues returns the values of the secret-looking members of a
// JSON graph (GET /v1/pipeline?format=json), longest first.
func secretValues(graph []byte) []string {
	dec := json.NewDecoder(bytes.NewReader(graph))
	dec.UseNumber()
	var v any
	if dec.Decode(&v) != nil {
		return nil
	}
	return collectSecrets(v, nil)
}

func collectSecrets(v any, out []string) []string {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if s, ok := e.(string); ok && secretName(k) && len(s) >= minKnown && !slices.Contains(out, s) {
				out = append(out, s)
			}
			out = collectSecrets(e, out)
		}
	case []any:
		for _, e := range x {
			out = collectSecrets(e, out)
		}
	}
	slices.SortFunc(out, func(a, b string) int { return len(b) - len(a) })
	return out
}

// redactLines redacts a value that may span lines.
func redactLines(s string, known []string) string {
	r := lineRedactor{known: known}
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = r.line(l)
	}
	return strings.Join(lines, "\n")
}

// redactView redacts GET /v1/config's settings.
func redactView(v ConfigView) ConfigView {
	out := ConfigView{Path: v.Path, Settings: make(map[string]SettingValue, len(v.Settings))}
	for name, s := range v.Settings {
		if secretName(name) && s.Value != "" {
			s.Value = Redacted
		} else {
			s.Value = redactLines(s.Value, nil)
		}
		out.Settings[name] = s
	}
	return out
}
