package worker

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/hashicorp/go-hclog"
)

// Stop is how Serve should stop.
type Stop int

const (
	// StopGraceful stops accepting, lets in-flight requests finish within
	// graceful_timeout, then closes whatever is left.
	StopGraceful Stop = iota + 1
	// StopImmediate closes every listener and connection at once.
	StopImmediate
)

func (s Stop) String() string {
	switch s {
	case StopGraceful:
		return "graceful"
	case StopImmediate:
		return "immediate"
	}
	return "unknown"
}

// notYetSignals are the rest of gunicorn's master signal table (HUP reload,
// USR1 reopen logs, USR2 upgrade, TTIN/TTOU add/remove a worker). They are
// caught so that a gunicorn habit such as kill -HUP does not terminate the
// server (the default action), and logged as not supported yet.
var notYetSignals = []os.Signal{syscall.SIGHUP, syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGTTIN, syscall.SIGTTOU}

// Signals relays the master's signal table as stop requests until ctx is
// done: TERM asks for StopGraceful, INT and QUIT for StopImmediate. The
// signals of notYetSignals are logged and otherwise ignored, and so is PIPE
// (a closed log pipe must not kill the server; the write fails instead).
// The relaying goroutine belongs to ctx: when ctx is done it restores the
// default signal handling and closes the returned channel.
func Signals(ctx context.Context, log hclog.Logger) <-chan Stop { return signals(ctx, log, nil) }

// signals is Signals, with USR1 calling reopen (which must not block)
// when it is set.
func signals(ctx context.Context, log hclog.Logger, reopen func()) <-chan Stop {
	sigs := make(chan os.Signal, 4)
	watched := append([]os.Signal{syscall.SIGTERM, syscall.SIGINT, syscall.SIGQUIT, syscall.SIGPIPE}, notYetSignals...)
	signal.Notify(sigs, watched...)
	out := make(chan Stop)
	go func() {
		defer close(out)
		defer signal.Stop(sigs)
		for {
			var sig os.Signal
			select {
			case <-ctx.Done():
				return
			case sig = <-sigs:
			}
			var st Stop
			switch sig {
			case syscall.SIGTERM:
				st = StopGraceful
			case syscall.SIGINT, syscall.SIGQUIT:
				st = StopImmediate
			case syscall.SIGPIPE:
				continue
			case syscall.SIGUSR1:
				if reopen != nil {
					log.Info("signal received", "signal", "USR1", "action", "reopen logs")
					reopen()
					continue
				}
				log.Warn("signal not supported yet; ignored", "signal", signalName(sig))
				continue
			default:
				log.Warn("signal not supported yet; ignored", "signal", signalName(sig))
				continue
			}
			log.Info("signal received", "signal", signalName(sig), "stop", st.String())
			select {
			case out <- st:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}

// signalName gives gunicorn's spelling: TERM, INT, HUP.
func signalName(sig os.Signal) string {
	switch sig {
	case syscall.SIGTERM:
		return "TERM"
	case syscall.SIGINT:
		return "INT"
	case syscall.SIGQUIT:
		return "QUIT"
	case syscall.SIGHUP:
		return "HUP"
	case syscall.SIGUSR1:
		return "USR1"
	case syscall.SIGUSR2:
		return "USR2"
	case syscall.SIGTTIN:
		return "TTIN"
	case syscall.SIGTTOU:
		return "TTOU"
	case syscall.SIGWINCH:
		return "WINCH"
	}
	return sig.String()
}
