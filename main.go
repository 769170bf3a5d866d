// Command paddock serves HTTP through middleware pipelines described in a
// paste.deploy INI file. See README.md and paddock(8).
package main

import (
	"os"
)

func main() { os.Exit(run(os.Args, os.Stdout, os.Stderr)) }
