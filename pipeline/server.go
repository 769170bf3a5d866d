package pipeline

// ServerSpec is what the built-in server factories return: the settings of
// a [server:NAME] section with where each was set. paddock serves the app
// itself; the settings (bind, workers, timeouts, ...) configure it.
type ServerSpec struct {
	// Factory is the spec the section named (egg:paddock#http).
	Factory string
	// Section and Pos locate the section.
	Section string
	Pos     Pos
	// Settings are the section's local options.
	Settings map[string]string
	// Global is the section's global configuration.
	Global map[string]string

	positions map[string]Pos
}

// PosOf returns where setting key was written.
func (s *ServerSpec) PosOf(key string) Pos {
	if p, ok := s.positions[key]; ok {
		return p
	}
	return s.Pos
}

func serverFactory() Factory {
	return Server("paddock's HTTP server settings (gunicorn names)", func(c *Config) (any, error) {
		for k := range c.Local {
			c.Lookup(k) // the server settings layer validates names
		}
		return &ServerSpec{Factory: c.Spec, Section: c.Section, Pos: c.Pos, Settings: c.Local, Global: c.Global, positions: c.optPos}, nil
	})
}

// registerServers registers the server factories: paddock's own and the
// names gunicorn, Paste and waitress configs use, all served by paddock.
func registerServers(r *Registry) {
	r.Register(serverFactory(), "egg:paddock#http", "egg:paddock#main", "egg:gunicorn#main", "egg:Paste#http", "egg:waitress#main", "egg:PasteScript#wsgiutils")
}
