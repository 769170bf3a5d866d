package pipeline

import (
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Pos is a place in a config file.
type Pos struct {
	File string
	Line int
}

func (p Pos) String() string {
	if p.File == "" {
		return "<unknown>"
	}
	if p.Line <= 0 {
		return p.File
	}
	return p.File + ":" + strconv.Itoa(p.Line)
}

// Config is what a factory receives: the section's local options and the
// global configuration (DEFAULT plus set additions, here and __file__), with
// the position of every option so errors can name file:line.
//
// Getters look in the local options first and then in the global ones, as
// Paste and oslo factories do (conf = global_conf.copy(); conf.update(local)).
type Config struct {
	// Section is the config section the factory was named in, e.g.
	// "filter:cors"; empty for a factory reached only through a URI.
	Section string
	// Pos is where the section starts.
	Pos Pos
	// Spec is the factory spec as written (egg:paddock#cors).
	Spec string
	// Global and Local are the configuration as PasteDeploy passes it.
	Global map[string]string
	Local  map[string]string
	// Logger is a named logger for the factory's runtime messages.
	Logger hclog.Logger

	optPos  map[string]Pos
	keys    []string // local keys in file order
	used    map[string]bool
	closers *[]io.Closer
	// starters collects OnStart work.
	starters *[]func()
	// statuses collects AddStatus reports (status.go).
	statuses *[]StatusEntry
	// watch collects WatchFile paths.
	watch   *[]string
	metrics MetricsSource
}

// Metrics is LoadOptions.Metrics: the server's metrics, for the metrics
// app; nil outside a serving process.
func (c *Config) Metrics() MetricsSource { return c.metrics }

// NewConfig returns a Config for tests and for programs building handlers
// without a file.
func NewConfig(local map[string]string) *Config {
	if local == nil {
		local = map[string]string{}
	}
	return &Config{Local: local, Global: map[string]string{}, Logger: hclog.NewNullLogger(), closers: new([]io.Closer), starters: new([]func())}
}

// Lookup returns the value of key (local first, then global) and whether it
// is set. It marks a local key as used.
func (c *Config) Lookup(key string) (string, bool) {
	if v, ok := c.Local[key]; ok {
		if c.used == nil {
			c.used = make(map[string]bool)
		}
		c.used[key] = true
		return v, true
	}
	v, ok := c.Global[key]
	return v, ok
}

// String returns the value of key, or def when it is not set.
func (c *Config) String(key, def string) string {
	if v, ok := c.Lookup(key); ok {
		return v
	}
	return def
}

// Int returns key as an integer.
func (c *Config) Int(key string, def int) (int, error) {
	v, ok := c.Lookup(key)
	if !ok || strings.TrimSpace(v) == "" {
		return def, nil
	}
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil {
		return def, c.Errorf(key, "%s: not an integer: %q", key, v)
	}
	return n, nil
}

// Int64 returns key as a 64-bit integer.
func (c *Config) Int64(key string, def int64) (int64, error) {
	v, ok := c.Lookup(key)
	if !ok || strings.TrimSpace(v) == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if err != nil {
		return def, c.Errorf(key, "%s: not an integer: %q", key, v)
	}
	return n, nil
}

// Float returns key as a floating point number.
func (c *Config) Float(key string, def float64) (float64, error) {
	v, ok := c.Lookup(key)
	if !ok || strings.TrimSpace(v) == "" {
		return def, nil
	}
	f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
	if err != nil {
		return def, c.Errorf(key, "%s: not a number: %q", key, v)
	}
	return f, nil
}

// Bool returns key as a boolean, accepting what paste.deploy.converters
// asbool accepts: true/yes/on/y/t/1 and false/no/off/n/f/0, any case.
func (c *Config) Bool(key string, def bool) (bool, error) {
	v, ok := c.Lookup(key)
	if !ok || strings.TrimSpace(v) == "" {
		return def, nil
	}
	b, err := ParseBool(v)
	if err != nil {
		return def, c.Errorf(key, "%s: %v", key, err)
	}
	return b, nil
}

// ParseBool parses a boolean the way paste.deploy.converters.asbool does.
func ParseBool(v string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "true", "yes", "on", "y", "t", "1":
		return true, nil
	case "false", "no", "off", "n", "f", "0":
		return false, nil
	}
	return false, fmt.Errorf("not a boolean: %q", v)
}

// Duration returns key as a duration: a bare number is seconds (gunicorn
// and oslo style), otherwise Go syntax ("1m30s").
func (c *Config) Duration(key string, def time.Duration) (time.Duration, error) {
	v, ok := c.Lookup(key)
	if !ok || strings.TrimSpace(v) == "" {
		return def, nil
	}
	d, err := ParseDuration(v)
	if err != nil {
		return def, c.Errorf(key, "%s: %v", key, err)
	}
	return d, nil
}

// ParseDuration parses seconds ("30", "0.5") or a Go duration ("1m30s").
func ParseDuration(v string) (time.Duration, error) {
	v = strings.TrimSpace(v)
	if f, err := strconv.ParseFloat(v, 64); err == nil {
		if f < 0 {
			return 0, fmt.Errorf("negative duration %q", v)
		}
		return time.Duration(f * float64(time.Second)), nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("not a duration (seconds or 1m30s): %q", v)
	}
	if d < 0 {
		return 0, fmt.Errorf("negative duration %q", v)
	}
	return d, nil
}

// List returns key split on whitespace and commas, empty items dropped.
func (c *Config) List(key string) []string {
	v, ok := c.Lookup(key)
	if !ok {
		return nil
	}
	return SplitList(v)
}

// SplitList splits on whitespace and commas, dropping empty items.
func SplitList(v string) []string {
	return strings.FieldsFunc(v, func(r rune) bool {
		return r == ',' || r == ' ' || r == '\t' || r == '\n' || r == '\r'
	})
}

// PosOf returns where key was set: its own line when it is a local option of
// the section, else the section's position.
func (c *Config) PosOf(key string) Pos {
	if p, ok := c.optPos[key]; ok {
		return p
	}
	return c.Pos
}

// Errorf returns a configuration error located at key (or at the section
// when key is empty or unknown).
func (c *Config) Errorf(key string, format string, args ...any) error {
	return &Error{Pos: c.PosOf(key), Section: c.Section, Class: "ValueError", Msg: fmt.Sprintf(format, args...)}
}

// Wrapf is Errorf wrapping err, so errors.Is/As see it.
func (c *Config) Wrapf(key string, err error, format string, args ...any) error {
	return &Error{Pos: c.PosOf(key), Section: c.Section, Class: "ValueError", Msg: fmt.Sprintf(format, args...) + ": " + err.Error(), Err: err}
}

// Keys returns the local option names in the order PasteDeploy passes them
// (file order, outer use = sections last).
func (c *Config) Keys() []string {
	if c.keys == nil {
		keys := make([]string, 0, len(c.Local))
		for k := range c.Local {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		return keys
	}
	return append([]string(nil), c.keys...)
}

// Close closes what the factories registered with AddCloser, newest first.
// Load and Pipeline.Close do this; tests building handlers directly call it.
func (c *Config) Close() error {
	if c.closers == nil {
		return nil
	}
	var errs []error
	for i := len(*c.closers) - 1; i >= 0; i-- {
		if err := (*c.closers)[i].Close(); err != nil {
			errs = append(errs, err)
		}
	}
	*c.closers = nil
	return errors.Join(errs...)
}

// OnStart registers work to run once the pipeline built from this
// configuration serves (Pipeline.Start): background goroutines, tickers,
// health probes. A factory starts nothing while it builds: the master's
// validation of a reload and `paddock check` build pipelines they never
// serve, and must not send a request anywhere. What start starts, a
// closer (AddCloser) stops; Close may come without Start.
func (c *Config) OnStart(fn func()) {
	if c.starters == nil {
		c.starters = new([]func())
	}
	*c.starters = append(*c.starters, fn)
}

// Start runs what the factories registered with OnStart, once. Workers
// call Pipeline.Start; tests building handlers directly call this.
func (c *Config) Start() {
	if c.starters == nil {
		return
	}
	for _, fn := range *c.starters {
		fn()
	}
	*c.starters = nil
}

// AddCloser registers a resource to close when the pipeline built from
// this configuration is retired (or when the build fails part way).
func (c *Config) AddCloser(cl io.Closer) {
	if c.closers == nil {
		c.closers = new([]io.Closer)
	}
	*c.closers = append(*c.closers, cl)
}

// WatchFile names a file the factory read that is part of its
// configuration (an htpasswd file): a server reloads when it changes, as
// for the config file itself. Files a factory serves (static roots) are
// not for watching.
func (c *Config) WatchFile(path string) {
	if c.watch == nil {
		c.watch = new([]string)
	}
	*c.watch = append(*c.watch, path)
}

// Unused returns the local options no getter asked for, sorted.
func (c *Config) Unused() []string {
	var out []string
	for k := range c.Local {
		if !c.used[k] {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// Error is a configuration error located at file:line in a section.
// Class is the Python exception class PasteDeploy raises for the same
// problem (used by the canonical graph output); Msg is PasteDeploy's message
// where one exists.
type Error struct {
	Pos     Pos
	Section string
	Class   string
	Msg     string
	Err     error
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.Pos.File != "" {
		b.WriteString(e.Pos.String())
		b.WriteString(": ")
	}
	if e.Section != "" {
		b.WriteString("[")
		b.WriteString(e.Section)
		b.WriteString("]: ")
	}
	// PasteDeploy prefixes interpolation errors with the file name, which
	// the position already gives.
	b.WriteString(strings.TrimPrefix(e.Msg, "Error in file "+e.Pos.File+": "))
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// ErrorList is several configuration errors found in one load.
type ErrorList []*Error

func (l ErrorList) Error() string {
	parts := make([]string, len(l))
	for i, e := range l {
		parts[i] = e.Error()
	}
	return strings.Join(parts, "\n")
}

// Unwrap returns the errors for errors.Is/As.
func (l ErrorList) Unwrap() []error {
	out := make([]error, len(l))
	for i, e := range l {
		out[i] = e
	}
	return out
}
