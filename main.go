// Command paddock serves HTTP through middleware pipelines described in a
// paste.deploy INI file. See README.md and paddock(8). The commands live
// in package internal/command; this file only stamps the build.
package main

import (
	"os"

	"paddock/internal/command"
)

// version and commit are set at build time:
// -ldflags "-X main.version=v1.0.0 -X main.commit=$(git rev-parse --short HEAD)".
// Without commit, `paddock version` uses the revision go build stamps
// into the binary (vcs.revision), which it only does with -buildvcs.
var (
	version = "dev"
	commit  = ""
)

func main() {
	os.Exit(command.Run(os.Args, os.Stdout, os.Stderr, command.Build{Version: version, Commit: commit}))
}
