package pipeline

// dict is an insertion-ordered string map with Python dict semantics
// (update keeps a key's place, delete removes it), shared by pointer the way
// PasteDeploy shares its global_conf and local_conf dicts between contexts.
// Each value remembers where in a file it was set.
type dict struct {
	keys []string
	m    map[string]dictEntry
}

type dictEntry struct {
	val string
	pos Pos
}

func newDict() *dict { return &dict{m: make(map[string]dictEntry)} }

func (d *dict) len() int { return len(d.keys) }

func (d *dict) get(k string) (string, bool) {
	e, ok := d.m[k]
	return e.val, ok
}

func (d *dict) has(k string) bool {
	_, ok := d.m[k]
	return ok
}

func (d *dict) posOf(k string) Pos { return d.m[k].pos }

func (d *dict) set(k, v string, pos Pos) {
	if _, ok := d.m[k]; !ok {
		d.keys = append(d.keys, k)
	}
	d.m[k] = dictEntry{v, pos}
}

func (d *dict) del(k string) {
	if _, ok := d.m[k]; !ok {
		return
	}
	delete(d.m, k)
	for i, key := range d.keys {
		if key == k {
			d.keys = append(d.keys[:i:i], d.keys[i+1:]...)
			break
		}
	}
}

// pop removes k and returns its value.
func (d *dict) pop(k string) (string, bool) {
	v, ok := d.get(k)
	if ok {
		d.del(k)
	}
	return v, ok
}

func (d *dict) copy() *dict {
	c := &dict{keys: append([]string(nil), d.keys...), m: make(map[string]dictEntry, len(d.m))}
	for k, v := range d.m {
		c.m[k] = v
	}
	return c
}

// update copies every entry of o into d (Python dict.update).
func (d *dict) update(o *dict) {
	for _, k := range o.keys {
		d.set(k, o.m[k].val, o.m[k].pos)
	}
}

// plain returns the entries as a Go map (a snapshot).
func (d *dict) plain() map[string]string {
	out := make(map[string]string, len(d.keys))
	for k, e := range d.m {
		out[k] = e.val
	}
	return out
}
