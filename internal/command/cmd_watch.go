package command

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"paddock/control"
	"paddock/logname"
	"paddock/reload"
	"paddock/worker"
)

// watchReloadTimeout bounds one reload the watcher asks for (validation,
// and the workers' acknowledgements or roll).
const watchReloadTimeout = time.Minute

// startConfigWatcher runs the config watcher of a master (workers >= 1)
// when watch_config is on: once the master runs, it watches the files the
// running config read (reload.Watcher) and, on a settled change, calls
// the arbiter's ReloadSaved with the watcher's snapshot: the path HUP
// and `ctl reload` take, except that a config that would take the server
// off its addresses is refused; after a good reload it watches the new
// config's files. The returned stop ends it and
// waits; it also ends by itself when the arbiter stops. workers = 0 has
// no watcher: the in-process server has no master to reload it.
func startConfigWatcher(ctx context.Context, arb *worker.Arbiter, s *worker.Settings, log hclog.Logger) (stop func()) {
	log = log.Named(logname.Reload)
	if !s.WatchConfig {
		log.Info("watch_config is off; reload with HUP or paddock ctl reload")
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { runConfigWatcher(ctx, arb, log) })
	return func() {
		cancel()
		wg.Wait()
	}
}

func runConfigWatcher(ctx context.Context, arb *worker.Arbiter, log hclog.Logger) {
	files, err := arb.WatchedFiles(ctx) // answered once the master runs
	if err != nil {
		return // the master did not start, or stopped
	}
	w, err := reload.New(files, log)
	if err != nil {
		log.Error("cannot watch the config; reload with HUP or paddock ctl reload", "error", err)
		return
	}
	wctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Go(func() {
		if err := w.Run(wctx); err != nil {
			log.Error("config watcher stopped; reload with HUP or paddock ctl reload", "error", err)
		}
	})
	log.Info("watching the config", "files", strings.Join(files, " "))
	for {
		select {
		case <-ctx.Done():
			return
		case <-arb.Done():
			return
		case <-w.Changes():
			reloadOnChange(ctx, arb, w, log)
		}
	}
}

// reloadOnChange reloads after a change, applying the watcher's settled
// snapshot of the files. A reload still rolling out (busy) is waited
// for, so the newest content is applied after it; a broken config, or
// one refused for taking the server off its addresses, is the arbiter's
// to log and show in status, and the next change tries again.
func reloadOnChange(ctx context.Context, arb *worker.Arbiter, w *reload.Watcher, log hclog.Logger) {
	for {
		rctx, cancel := context.WithTimeout(ctx, watchReloadTimeout)
		res, err := arb.ReloadSaved(rctx, w.Snapshot())
		cancel()
		switch {
		case err == nil:
			log.Info("config reloaded", "generation", res.Generation, "changed", strings.Join(res.Changed, ","),
				"duration_s", res.DurationS)
			files, err := arb.WatchedFiles(ctx)
			if err == nil {
				err = w.SetFiles(files)
			}
			if err != nil {
				log.Warn("cannot update the watched files", "error", err)
			}
			return
		case errors.Is(err, control.ErrBusy):
			select {
			case <-ctx.Done():
				return
			case <-arb.Done():
				return
			case <-time.After(200 * time.Millisecond):
			}
		default:
			log.Debug("reload after a change failed; waiting for the next change", "error", err)
			return
		}
	}
}
