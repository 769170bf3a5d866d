package pipeline

import (
	"fmt"
	"sort"
	"strings"
)

// GraphDot renders a graph (as returned by Graph) in Graphviz dot syntax:
// one box per factory call, filters pointing at what they wrap, composites
// at their mounts.
func GraphDot(g any) string {
	var b strings.Builder
	b.WriteString("digraph paddock {\n  rankdir=LR;\n  node [shape=box, fontname=\"monospace\"];\n")
	n := 0
	var walk func(v any) string
	walk = func(v any) string {
		n++
		id := fmt.Sprintf("n%d", n)
		m, ok := v.(map[string]any)
		if !ok {
			fmt.Fprintf(&b, "  %s [label=\"(none)\"];\n", id)
			return id
		}
		kind, _ := m["kind"].(string)
		label := kind
		if f, ok := m["factory"].(string); ok {
			label += "\\n" + dotEscape(f)
		}
		shape := ""
		switch kind {
		case "placeholder":
			label, shape = "<app>", ", shape=ellipse"
		case "function":
			label, shape = "function", ", shape=ellipse"
		case "misapplied":
			label, shape = "misapplied", ", shape=octagon"
		}
		fmt.Fprintf(&b, "  %s [label=\"%s\"%s];\n", id, label, shape)
		edge := func(child any, label string) {
			cid := walk(child)
			if label == "" {
				fmt.Fprintf(&b, "  %s -> %s;\n", id, cid)
			} else {
				fmt.Fprintf(&b, "  %s -> %s [label=\"%s\"];\n", id, cid, dotEscape(label))
			}
		}
		if c, ok := m["call"]; ok {
			edge(c, "")
		}
		if c, ok := m["callee"]; ok {
			edge(c, "callee")
		}
		if c, ok := m["arg"]; ok {
			edge(c, "arg")
		}
		if nf, ok := m["not_found_app"]; ok && nf != nil {
			edge(nf, "not found")
		}
		if apps, ok := m["apps"].(map[string]any); ok {
			keys := make([]string, 0, len(apps))
			for k := range apps {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				edge(apps[k], k)
			}
		}
		if app, ok := m["app"]; ok {
			edge(app, "")
		}
		return id
	}
	walk(g)
	b.WriteString("}\n")
	return b.String()
}

func dotEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s)
}
