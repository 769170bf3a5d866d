package command

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

// buildInfo is what `paddock version` prints.
type buildInfo struct {
	version, commit, goVersion string
}

// readBuildInfo combines the -X variables with the binary's build info
// (bi is nil when the binary has none).
func readBuildInfo(version, commit string, bi *debug.BuildInfo) buildInfo {
	out := buildInfo{version: version, commit: commit, goVersion: runtime.Version()}
	if bi != nil {
		if bi.GoVersion != "" {
			out.goVersion = bi.GoVersion
		}
		if out.commit == "" {
			rev, modified := "", false
			for _, s := range bi.Settings {
				switch s.Key {
				case "vcs.revision":
					rev = s.Value
				case "vcs.modified":
					modified = s.Value == "true"
				}
			}
			if len(rev) > 12 {
				rev = rev[:12]
			}
			if rev != "" && modified {
				rev += "-modified"
			}
			out.commit = rev
		}
	}
	if out.commit == "" {
		out.commit = "unknown"
	}
	return out
}

// printVersion writes the version, the commit and the Go toolchain.
func printVersion(w io.Writer) error {
	bi, _ := debug.ReadBuildInfo()
	info := readBuildInfo(build.Version, build.Commit, bi)
	_, err := fmt.Fprintf(w, "paddock %s\ncommit: %s\ngo: %s %s/%s\n", info.version, info.commit, info.goVersion, runtime.GOOS, runtime.GOARCH)
	if err != nil {
		return fmt.Errorf("version: %w", err)
	}
	return nil
}
