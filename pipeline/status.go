package pipeline

import "slices"

// StatusEntry is one live report a factory registered with
// Config.AddStatus: what a running pipeline can tell about itself (the
// proxy app's upstreams), read by the server for the control socket.
type StatusEntry struct {
	// Name says what the report is about; the server looks reports up
	// by it ("upstreams": the proxy app's ProxyStatus).
	Name string
	// Section is the config section of the factory that registered it
	// ("app:backend"), or its spec when it was reached without one.
	Section string
	// Report returns the current state. It is safe to call from any
	// goroutine, also after the pipeline was closed.
	Report func() any
}

// AddStatus registers fn as the live report name of the object being
// built; Pipeline.Status lists it once the pipeline is loaded. fn must be
// safe for concurrent use and cheap (the control socket calls it on
// request).
func (c *Config) AddStatus(name string, fn func() any) {
	if c.statuses == nil {
		c.statuses = new([]StatusEntry)
	}
	section := c.Section
	if section == "" {
		section = c.Spec
	}
	*c.statuses = append(*c.statuses, StatusEntry{Name: name, Section: section, Report: fn})
}

// Status returns the live reports the pipeline's factories registered
// (Config.AddStatus), in build order.
func (p *Pipeline) Status() []StatusEntry {
	if p == nil {
		return nil
	}
	return slices.Clone(p.statuses)
}
