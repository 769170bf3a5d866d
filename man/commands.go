package man

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/urfave/cli/v2"
)

// visibleCommand is a command as urfave/cli documents it: not hidden, in
// the order its docs template walks them (depth first).
type visibleCommand struct {
	path  []string // the names from the app's: ctl, workers, add
	depth int      // 0 for the app's own commands
	cmd   *cli.Command
}

// walkCommands lists cmds the way urfave/cli's prepareCommands does:
// hidden commands and everything below them are left out.
func walkCommands(cmds []*cli.Command, parent []string, depth int) []visibleCommand {
	var out []visibleCommand
	for _, c := range cmds {
		if c.Hidden {
			continue
		}
		path := append(append([]string(nil), parent...), c.Name)
		out = append(out, visibleCommand{path: path, depth: depth, cmd: c})
		out = append(out, walkCommands(c.Subcommands, path, depth+1)...)
	}
	return out
}

// synopsis is the command's one-line synopsis in Markdown:
// **paddock ctl workers add** [*options*] N.
func synopsis(app string, vc visibleCommand) string {
	s := "**" + inline(app+" "+strings.Join(vc.path, " ")) + "**"
	if len(vc.cmd.VisibleFlags()) > 0 {
		s += " \\[*options*\\]"
	}
	if vc.cmd.ArgsUsage != "" {
		s += " " + inline(vc.cmd.ArgsUsage)
	}
	return s
}

// flagLine matches a flag as urfave/cli's Markdown template writes it:
// **--bind, -b**="": usage (default: x), or **--json**: usage.
var flagLine = regexp.MustCompile(`^\*\*(-[^*]*)\*\*(="")?: (.*)$`)

// placeholder is the flag's value name: the first backticked word of its
// usage, as cli.UnquoteUsage finds it, else VALUE.
var placeholder = regexp.MustCompile("`([^`]+)`")

// flagItem rewrites one of urfave/cli's flag lines as a definition list
// item: the names (bold) with the value's placeholder (italic) as the term,
// the usage as the definition.
func flagItem(line string) (string, error) {
	m := flagLine.FindStringSubmatch(line)
	if m == nil {
		return "", fmt.Errorf("man: urfave/cli wrote a flag line this package cannot read: %q", line)
	}
	names := strings.Split(m[1], ", ")
	for i, n := range names {
		names[i] = "**" + inline(n) + "**"
	}
	term := strings.Join(names, ", ")
	if m[2] != "" {
		ph := "VALUE"
		if p := placeholder.FindStringSubmatch(m[3]); p != nil {
			ph = p[1]
		}
		term += "=*" + inline(ph) + "*"
	}
	return term + "\n:   " + inline(m[3]), nil
}

// flagItems converts a block of urfave/cli flag paragraphs.
func flagItems(paragraphs [][]string) ([]string, error) {
	var out []string
	for _, p := range paragraphs {
		if len(p) != 1 {
			return nil, fmt.Errorf("man: a flag paragraph of %d lines from urfave/cli: %q", len(p), p)
		}
		item, err := flagItem(p[0])
		if err != nil {
			return nil, err
		}
		out = append(out, item, "")
	}
	return out, nil
}

// paragraphs groups lines into blank-line separated paragraphs.
func paragraphs(lines []string) [][]string {
	var (
		out [][]string
		cur []string
	)
	for _, l := range lines {
		if strings.TrimSpace(l) == "" {
			if len(cur) > 0 {
				out = append(out, cur)
				cur = nil
			}
			continue
		}
		cur = append(cur, l)
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}

// commandHeading is a command's heading in urfave/cli's Markdown: ## for
// the app's commands, ### for theirs, and so on.
var commandHeading = regexp.MustCompile(`^(#{2,}) (.*)$`)

// commandsSection rewrites urfave/cli's COMMANDS section: one .SS per
// command, named by its full path (ctl workers add), with its synopsis,
// usage, description (which urfave/cli leaves out) and its flags as a
// definition list. The headings of body must be the visible commands of
// app in urfave/cli's order; anything else is an error, so a change of
// urfave/cli's template shows up in the tests instead of in the page.
func commandsSection(app *cli.App, body []string) ([]string, error) {
	cmds := walkCommands(app.Commands, nil, 0)

	type block struct {
		vc    visibleCommand
		lines []string
	}
	var blocks []*block
	for _, line := range body {
		if m := commandHeading.FindStringSubmatch(line); m != nil {
			i := len(blocks)
			if i >= len(cmds) {
				return nil, fmt.Errorf("man: urfave/cli documents a command %q the app does not have", m[2])
			}
			vc := cmds[i]
			if want := strings.Join(vc.cmd.Names(), ", "); m[2] != want || len(m[1]) != vc.depth+2 {
				return nil, fmt.Errorf("man: urfave/cli heading %q where %q (level %d) was expected", line, want, vc.depth+2)
			}
			blocks = append(blocks, &block{vc: vc})
			continue
		}
		if len(blocks) == 0 {
			if strings.TrimSpace(line) != "" {
				return nil, fmt.Errorf("man: text before the first command in urfave/cli's COMMANDS: %q", line)
			}
			continue
		}
		b := blocks[len(blocks)-1]
		b.lines = append(b.lines, line)
	}
	if len(blocks) != len(cmds) {
		return nil, fmt.Errorf("man: urfave/cli documents %d commands, the app has %d visible ones", len(blocks), len(cmds))
	}

	var out []string
	for _, b := range blocks {
		c := b.vc.cmd
		title := strings.Join(b.vc.path, " ")
		if len(c.Aliases) > 0 {
			title += " (also " + strings.Join(c.Aliases, ", ") + ")"
		}
		out = append(out, "### "+inline(title), "", synopsis(app.Name, b.vc), "")
		var text, usageText, flags [][]string
		for _, p := range paragraphs(b.lines) {
			switch {
			case strings.HasPrefix(p[0], "**-"):
				flags = append(flags, p)
			case strings.HasPrefix(p[0], ">") || strings.HasPrefix(p[0], "    "):
				usageText = append(usageText, p) // urfave/cli's own Markdown of UsageText
			default:
				text = append(text, p)
			}
		}
		for _, p := range text {
			out = append(out, inline(strings.Join(p, " ")), "")
		}
		if c.Description != "" {
			out = append(out, inline(c.Description), "")
		}
		for _, p := range usageText {
			out = append(out, p...)
			out = append(out, "")
		}
		items, err := flagItems(flags)
		if err != nil {
			return nil, fmt.Errorf("man: command %s: %w", title, err)
		}
		out = append(out, items...)
	}
	return out, nil
}
