// Package logname holds the names of paddock's hclog sub-loggers, so every
// package spells them the same way and a log line's module can be grepped
// back to its code.
package logname

// Sub-logger names, used with hclog.Logger.Named.
const (
	Master   = "master"
	Worker   = "worker"
	Reload   = "reload"
	Control  = "control"
	Listener = "listener"
)
