package man

import (
	_ "embed"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/cpuguy83/go-md2man/v2/md2man"
	"github.com/urfave/cli/v2"

	"paddock/pipeline"
	"paddock/worker"
)

// The hand-written sources of the pages. A line "<!-- paddock:NAME ARGS -->"
// is a marker, replaced by generated Markdown.
var (
	//go:embed paddock.8.md
	source8 string
	//go:embed paddock.ini.5.md
	source5 string
)

// Options are what may differ between two renderings of a page.
type Options struct {
	// Date is the date on the title line, YYYY-MM-DD. Empty (the
	// committed pages) leaves it out, so the page does not change from
	// one build to the next.
	Date string
}

// ExitStatus is one exit status of the paddock command, for EXIT STATUS.
type ExitStatus struct {
	Code int
	// Meaning is plain text (escaped for Markdown when rendered).
	Meaning string
}

var dateRe = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}$`)

// title is the page's title line, a go-md2man title block:
// % NAME SECTION "DATE" "SOURCE" "MANUAL".
func title(name string, section int, manual string, opt Options) (string, error) {
	if opt.Date != "" && !dateRe.MatchString(opt.Date) {
		return "", fmt.Errorf("man: date %q: want YYYY-MM-DD", opt.Date)
	}
	return fmt.Sprintf("%% %s %d %q \"paddock\" %q", name, section, opt.Date, manual), nil
}

// DateFromEpoch turns SOURCE_DATE_EPOCH (seconds since 1970, reproducible
// builds) into the title line's date, in UTC; empty gives no date.
func DateFromEpoch(epoch string) (string, error) {
	if strings.TrimSpace(epoch) == "" {
		return "", nil
	}
	n, err := strconv.ParseInt(strings.TrimSpace(epoch), 10, 64)
	if err != nil || n < 0 {
		return "", fmt.Errorf("man: SOURCE_DATE_EPOCH=%q: want a number of seconds since 1970", epoch)
	}
	return time.Unix(n, 0).UTC().Format(time.DateOnly), nil
}

var markerRe = regexp.MustCompile(`^<!-- paddock:(\S+)((?: \S+)*) -->$`)

// expand replaces every marker line of src with what its handler returns.
// An unknown marker, or a known one with the wrong arguments, is an error.
func expand(src string, handlers map[string]func(args []string) ([]string, error)) (string, error) {
	var out []string
	for i, line := range strings.Split(src, "\n") {
		if !strings.HasPrefix(line, "<!-- paddock:") {
			out = append(out, line)
			continue
		}
		m := markerRe.FindStringSubmatch(line)
		if m == nil {
			return "", fmt.Errorf("man: line %d: malformed marker %q", i+1, line)
		}
		h, ok := handlers[m[1]]
		if !ok {
			return "", fmt.Errorf("man: line %d: unknown marker %q", i+1, m[1])
		}
		lines, err := h(strings.Fields(m[2]))
		if err != nil {
			return "", fmt.Errorf("line %d: %w", i+1, err)
		}
		out = append(out, lines...)
	}
	return strings.Join(out, "\n"), nil
}

func noArgs(name string, f func() ([]string, error)) func([]string) ([]string, error) {
	return func(args []string) ([]string, error) {
		if len(args) != 0 {
			return nil, fmt.Errorf("man: marker %s takes no arguments, got %q", name, args)
		}
		return f()
	}
}

// Markdown8 is the Markdown of paddock(8) for app: urfave/cli's Markdown
// (NAME, COMMANDS) merged into paddock.8.md. exits are the statuses of
// the paddock command.
func Markdown8(app *cli.App, exits []ExitStatus, opt Options) (string, error) {
	if app == nil {
		return "", fmt.Errorf("man: no app")
	}
	head, err := title(strings.ToUpper(app.Name), 8, "System Manager's Manual", opt)
	if err != nil {
		return "", err
	}
	cliMD, err := app.ToMarkdown()
	if err != nil {
		return "", fmt.Errorf("man: urfave/cli: %w", err)
	}
	var name, commands []string
	for _, s := range splitSections(cliMD) {
		switch s.title {
		case "":
			if strings.TrimSpace(strings.Join(s.body, "")) != "" {
				return "", fmt.Errorf("man: urfave/cli wrote text before NAME: %q", s.body)
			}
		case "NAME":
			for _, p := range paragraphs(s.body) {
				name = append(name, inline(strings.Join(p, " ")))
			}
		case "SYNOPSIS":
			// "paddock" and urfave/cli's generic usage line; the
			// synopsis marker gives one line per command instead.
		case "COMMANDS":
			if commands, err = commandsSection(app, s.body); err != nil {
				return "", err
			}
		default:
			// GLOBAL OPTIONS, or DESCRIPTION from App.Description: give
			// them a place in paddock.8.md when the app gets them.
			return "", fmt.Errorf("man: urfave/cli wrote a section %q that paddock(8) has no place for", s.title)
		}
	}
	if len(name) == 0 {
		return "", fmt.Errorf("man: urfave/cli wrote no NAME")
	}

	body, err := expand(source8, map[string]func([]string) ([]string, error){
		"name": noArgs("name", func() ([]string, error) { return name, nil }),
		"synopsis": noArgs("synopsis", func() ([]string, error) {
			var out []string
			for _, vc := range walkCommands(app.Commands, nil, 0) {
				if vc.depth == 0 {
					out = append(out, synopsis(app.Name, vc), "")
				}
			}
			return out, nil
		}),
		"commands": noArgs("commands", func() ([]string, error) { return commands, nil }),
		"exit-status": noArgs("exit-status", func() ([]string, error) {
			if len(exits) == 0 {
				return nil, fmt.Errorf("man: no exit statuses")
			}
			// One entry per status, in the order given; the meanings of
			// a status several commands use (3) are joined.
			var (
				codes    []int
				meanings = make(map[int][]string)
			)
			for _, e := range exits {
				if _, ok := meanings[e.Code]; !ok {
					codes = append(codes, e.Code)
				}
				meanings[e.Code] = append(meanings[e.Code], inline(e.Meaning))
			}
			var out []string
			for _, c := range codes {
				out = append(out, fmt.Sprintf("**%d**", c), ":   "+strings.Join(meanings[c], " "), "")
			}
			out = append(out, fmt.Sprintf("A worker process (started by the master, never by hand) exits %d when stopped, "+
				"%d when it was not started by a master (or by a different version), %d when its pipeline or sockets could not be built "+
				"(the error goes to the master first), and %d when a socket fails while serving; the master logs the status and replaces the worker.",
				worker.ExitWorkerOK, worker.ExitWorkerConfig, worker.ExitWorkerBootError, worker.ExitWorkerServeError), "")
			return out, nil
		}),
		"environment": noArgs("environment", func() ([]string, error) { return environment(app) }),
	})
	if err != nil {
		return "", fmt.Errorf("man: paddock.8.md: %w", err)
	}
	return head + "\n\n" + body, nil
}

// MarkdownIni5 is the Markdown of paddock.ini(5): paddock.ini.5.md with
// the settings of worker.Known() and the names of the default registry's
// factories filled in.
func MarkdownIni5(opt Options) (string, error) {
	head, err := title("PADDOCK.INI", 5, "File Formats Manual", opt)
	if err != nil {
		return "", err
	}
	notes := newFactoryNotes(pipeline.NewDefaultRegistry())
	body, err := expand(source5, map[string]func([]string) ([]string, error){
		"settings": noArgs("settings", func() ([]string, error) { return settingsList(), nil }),
		"factory": func(args []string) ([]string, error) {
			if len(args) != 2 {
				return nil, fmt.Errorf("man: marker factory wants KIND NAME, got %q", args)
			}
			return notes.named(args[0], args[1])
		},
		"other-factories": noArgs("other-factories", func() ([]string, error) { return notes.others(), nil }),
	})
	if err != nil {
		return "", fmt.Errorf("man: paddock.ini.5.md: %w", err)
	}
	return head + "\n\n" + body, nil
}

// Page8 renders paddock(8) as roff.
func Page8(app *cli.App, exits []ExitStatus, opt Options) ([]byte, error) {
	md, err := Markdown8(app, exits, opt)
	if err != nil {
		return nil, err
	}
	return md2man.Render([]byte(md)), nil
}

// PageIni5 renders paddock.ini(5) as roff.
func PageIni5(opt Options) ([]byte, error) {
	md, err := MarkdownIni5(opt)
	if err != nil {
		return nil, err
	}
	return md2man.Render([]byte(md)), nil
}
