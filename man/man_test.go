package man

import (
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/cpuguy83/go-md2man/v2/md2man"
	"github.com/urfave/cli/v2"

	"paddock/pipeline"
	"paddock/worker"
)

func TestInline(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"plain", "serve CONFIG", "serve CONFIG"},
		{"html-like", "add X-Paddock-Worker: <pid>", `add X-Paddock-Worker: \<pid\>`},
		{"link-like", "read settings from [server:`NAME`] (default)", "read settings from \\[server:`NAME`\\] (default)"},
		{"emphasis", "max_requests and *all*", `max\_requests and \*all\*`},
		{"code kept", "`a_b*c` and a_b", "`a_b*c` and a\\_b"},
		{"unpaired backtick", "it`s", "it\\`s"},
		{"line breaks", "one\ntwo\n  three", "one two three"},
		{"entity", "a &amp; b | c", `a \&amp; b \| c`},
		{"backslash", `C:\x`, `C:\\x`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := inline(tc.in); got != tc.want {
				t.Errorf("inline(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

// roffFont removes go-md2man's font changes.
var roffFont = regexp.MustCompile(`\\f[BIRP]`)

// TestInlineKeepsText renders every usage string the pages print through
// go-md2man and checks no character is lost (an unescaped <pid> used to
// vanish as raw HTML, [server:`NAME`] to become a link).
func TestInlineKeepsText(t *testing.T) {
	texts := []string{"add X-Paddock-Worker: <pid> to every response", "read settings from [server:`NAME`]", "a_b_ *c* [d](e) <f> &g; |h|"}
	for _, st := range worker.Known() {
		texts = append(texts, st.Usage)
	}
	for _, s := range texts {
		out := string(md2man.Render([]byte(inline(s) + "\n")))
		out = strings.TrimPrefix(out, ".nh\n")
		out = roffFont.ReplaceAllString(out, "")
		out = strings.Join(strings.Fields(out), " ")
		want := strings.ReplaceAll(s, "`", "")
		if !strings.Contains(out, want) {
			t.Errorf("%q renders as %q", s, out)
		}
	}
}

func TestExpand(t *testing.T) {
	handlers := map[string]func([]string) ([]string, error){
		"two":  noArgs("two", func() ([]string, error) { return []string{"a", "b"}, nil }),
		"echo": func(args []string) ([]string, error) { return args, nil },
	}
	got, err := expand("x\n<!-- paddock:two -->\n<!-- paddock:echo p q -->\n<!-- a comment -->", handlers)
	if err != nil {
		t.Fatal(err)
	}
	if want := "x\na\nb\np\nq\n<!-- a comment -->"; got != want {
		t.Errorf("expand = %q, want %q", got, want)
	}
	for _, bad := range []string{
		"<!-- paddock:nope -->",
		"<!-- paddock:two extra -->",
		"<!-- paddock:two-->",
		"<!-- paddock: -->",
	} {
		if _, err := expand("x\n"+bad, handlers); err == nil {
			t.Errorf("expand(%q): no error", bad)
		} else if !strings.Contains(err.Error(), "line 2") {
			t.Errorf("expand(%q): %v, want the line number", bad, err)
		}
	}
}

func TestTitle(t *testing.T) {
	got, err := title("PADDOCK", 8, "System Manager's Manual", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if want := `% PADDOCK 8 "" "paddock" "System Manager's Manual"`; got != want {
		t.Errorf("title = %q, want %q", got, want)
	}
	got, err = title("PADDOCK", 8, "M", Options{Date: "2026-11-30"})
	if err != nil || !strings.Contains(got, `"2026-11-30"`) {
		t.Errorf("title with date = %q, %v", got, err)
	}
	for _, bad := range []string{"yesterday", "2026-1-3", `2026-11-30" ".so /etc/passwd`} {
		if _, err := title("PADDOCK", 8, "M", Options{Date: bad}); err == nil {
			t.Errorf("date %q accepted", bad)
		}
	}
}

func TestDateFromEpoch(t *testing.T) {
	tests := []struct{ in, want, wantErr string }{
		{"0", "1970-01-01", ""},
		{"1764547200", "2025-12-01", ""},
		{" 86400 ", "1970-01-02", ""},
		{"", "", ""},
		{"-1", "", "SOURCE_DATE_EPOCH"},
		{"soon", "", "SOURCE_DATE_EPOCH"},
		{"99999999999999999999", "", "SOURCE_DATE_EPOCH"},
	}
	for _, tc := range tests {
		got, err := DateFromEpoch(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("DateFromEpoch(%q) = %q, %v; want an error naming %s", tc.in, got, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("DateFromEpoch(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestFactories(t *testing.T) {
	r := pipeline.NewDefaultRegistry()
	fs := factories(r)
	seen := make(map[string]int)
	for _, f := range fs {
		if len(f.names) == 0 || f.doc == "" {
			t.Errorf("factory %+v: no names or no doc", f)
		}
		for _, n := range f.names {
			seen[n]++
		}
	}
	for _, n := range r.Names() {
		if seen[n] != len(r.LookupAll(n)) {
			t.Errorf("name %s: in %d groups, registered for %d kinds", n, seen[n], len(r.LookupAll(n)))
		}
	}

	notes := newFactoryNotes(r)
	lines, err := notes.named("filter", "egg:oslo.middleware#cors")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(lines[0], "A filter (`paste.filter_factory`), registered as `egg:paddock#cors`, ") {
		t.Errorf("names line: %q", lines[0])
	}
	if _, err := notes.named("filter", "egg:paddock#cors"); err == nil {
		t.Error("a factory documented twice: no error")
	}
	if _, err := notes.named("app", "egg:paddock#cors"); err == nil {
		t.Error("a filter documented as an app: no error")
	}
	if _, err := notes.named("app", "egg:paddock#gone"); err == nil {
		t.Error("an unregistered factory: no error")
	}
	// healthcheck is an app and a filter under one name.
	if _, err := notes.named("app", "egg:paddock#healthcheck"); err != nil {
		t.Error(err)
	}
	if _, err := notes.named("filter", "egg:paddock#healthcheck"); err != nil {
		t.Error(err)
	}
	others := strings.Join(notes.others(), "\n")
	if strings.Contains(others, "egg:paddock#cors") || !strings.Contains(others, "egg:paddock#hello") {
		t.Errorf("others lists documented factories or misses undocumented ones:\n%s", others)
	}
}

// TestMarkdownIni5 checks what the ini(5) page must contain whatever the
// hand-written text says: every setting, every factory name, no marker.
func TestMarkdownIni5(t *testing.T) {
	md, err := MarkdownIni5(Options{})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(md, "<!-- paddock:") {
		t.Error("a marker was left in the page")
	}
	for _, st := range worker.Known() {
		if !strings.Contains(md, "\n**"+inline(st.Name)+"**\n:   ") {
			t.Errorf("setting %s has no entry", st.Name)
		}
	}
	for _, n := range pipeline.NewDefaultRegistry().Names() {
		if !strings.Contains(md, code(n)) {
			t.Errorf("factory name %s is not on the page", n)
		}
	}
	if !strings.HasPrefix(md, `% PADDOCK.INI 5 "" "paddock" "File Formats Manual"`+"\n") {
		t.Errorf("title: %q", strings.SplitN(md, "\n", 2)[0])
	}
}

func testApp() *cli.App {
	return &cli.App{
		Name:  "tool",
		Usage: "does things",
		Commands: []*cli.Command{
			{
				Name: "run", Aliases: []string{"r"}, Usage: "run it", ArgsUsage: "FILE",
				Description: "Runs FILE.\nTwice, with <care>.",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "mode", Aliases: []string{"m"}, EnvVars: []string{"TOOL_MODE"}, Value: "fast", Usage: "the `MODE`"},
					&cli.BoolFlag{Name: "dry", Usage: "do nothing"},
				},
			},
			{Name: "secret", Hidden: true, Subcommands: []*cli.Command{{Name: "inner", Usage: "hidden too"}}},
			{
				Name: "db", Usage: "the database",
				Subcommands: []*cli.Command{{Name: "migrate", Usage: "migrate it"}},
			},
		},
	}
}

func TestMarkdown8(t *testing.T) {
	md, err := Markdown8(testApp(), []ExitStatus{{0, "ok"}, {3, "run: no"}, {3, "db: no"}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`% TOOL 8 "" "paddock" "System Manager's Manual"` + "\n",
		"# NAME\n\ntool - does things\n",
		"**tool run** \\[*options*\\] FILE\n", // synopsis and command
		"### run (also r)\n",
		"Runs FILE. Twice, with \\<care\\>.\n", // the description, escaped
		"**--mode**, **-m**=*MODE*\n:   the `MODE` (default: \"fast\")\n",
		"**--dry**\n:   do nothing\n",
		"### db migrate\n\n**tool db migrate**\n",
		"**3**\n:   run: no db: no\n",
		"**TOOL\\_MODE**\n:   **tool run --mode**: the `MODE` (default: \"fast\").\n",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("missing %q in:\n%s", want, md)
		}
	}
	if strings.Contains(md, "secret") || strings.Contains(md, "inner") {
		t.Error("a hidden command is documented")
	}
	if strings.Contains(md, "<!-- paddock:") {
		t.Error("a marker was left in the page")
	}
}

// TestCommandsSectionMismatch: when urfave/cli documents commands other
// than the app's visible ones (a template change), rendering fails.
func TestCommandsSectionMismatch(t *testing.T) {
	app := testApp()
	for _, body := range []string{
		"## run, r\n\n## other\n",
		"## run\n\n## db\n\n### migrate\n",     // aliases missing
		"## run, r\n\n### db\n\n### migrate\n", // wrong level
		"## run, r\n\n## db\n",                 // migrate missing
		"stray text\n## run, r\n",
	} {
		if _, err := commandsSection(app, strings.Split(body, "\n")); err == nil {
			t.Errorf("no error for\n%s", body)
		}
	}
	if _, err := commandsSection(app, strings.Split("## run, r\n\n**--x**=\"\" without colon\n\n## db\n\n### migrate\n", "\n")); err == nil {
		t.Error("an unreadable flag line: no error")
	}
}

func TestEnvNames(t *testing.T) {
	names := EnvNames(testApp())
	for _, want := range []string{"TOOL_MODE", "PADDOCK_WORKERS", "WEB_CONCURRENCY", "LISTEN_FDS", "PADDOCK_WORKER_*"} {
		if !slices.Contains(names, want) {
			t.Errorf("EnvNames lacks %s: %v", want, names)
		}
	}
	if !slices.IsSorted(names) {
		t.Error("EnvNames is not sorted")
	}
}

func TestPagesRender(t *testing.T) {
	p8, err := Page8(testApp(), []ExitStatus{{0, "ok"}}, Options{Date: "2026-01-02"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(p8), "\n.TH TOOL 8 \"2026-01-02\" \"paddock\" \"System Manager's Manual\"\n") {
		t.Errorf("no .TH line in:\n%.300s", p8)
	}
	p5, err := PageIni5(Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(p5), "\n.TH PADDOCK.INI 5 \"\" \"paddock\" \"File Formats Manual\"\n") {
		t.Errorf("no .TH line in:\n%.300s", p5)
	}
	if _, err := Page8(nil, nil, Options{}); err == nil {
		t.Error("no app: no error")
	}
	if _, err := Page8(testApp(), nil, Options{}); err == nil {
		t.Error("no exit statuses: no error")
	}
	if _, err := PageIni5(Options{Date: "bad"}); err == nil {
		t.Error("bad date: no error")
	}
}
