package man

import (
	"strings"
)

// mdSpecial are the characters escaped in generated text: the ones
// blackfriday would read as emphasis, links, raw HTML, entities or table
// cells. Backticks are left alone: the CLI's usage strings use them for
// placeholders (`FILE`), which render as bold code.
const mdSpecial = "\\*_[]<>|&"

// inline turns plain text (a flag's usage, a command's description) into
// one line of Markdown that renders as the same text: line breaks become
// spaces and Markdown's special characters outside `code spans` are
// escaped. An unpaired backtick is escaped too.
func inline(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '`' {
			if j := strings.IndexByte(s[i+1:], '`'); j > 0 {
				b.WriteString(s[i : i+j+2])
				i += j + 1
				continue
			}
			b.WriteString("\\`")
			continue
		}
		if strings.IndexByte(mdSpecial, c) >= 0 {
			b.WriteByte('\\')
		}
		b.WriteByte(c)
	}
	return b.String()
}

// code is s as a Markdown code span; s must not contain a backtick.
func code(s string) string { return "`" + s + "`" }

// section is one "# NAME" block of a Markdown document.
type section struct {
	title string
	body  []string // lines after the heading
}

// splitSections cuts a Markdown document at its level-1 headings,
// ignoring lines inside fenced code blocks. Text before the first heading
// is returned as a section with an empty title.
func splitSections(md string) []section {
	var (
		out   []section
		cur   = section{}
		fence bool
	)
	for _, line := range strings.Split(md, "\n") {
		if strings.HasPrefix(line, "```") {
			fence = !fence
		}
		if !fence && strings.HasPrefix(line, "# ") {
			out = append(out, cur)
			cur = section{title: strings.TrimSpace(line[2:])}
			continue
		}
		cur.body = append(cur.body, line)
	}
	return append(out, cur)
}
