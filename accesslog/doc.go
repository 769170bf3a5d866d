// Package accesslog writes one line per HTTP request, in gunicorn's
// access_log_format or as a JSON object, without ever making a request
// wait for the disk. That is its one job; it imports nothing of paddock's.
//
// The pieces, each usable alone:
//
//   - Parse compiles an access_log_format once: Python %(name)s syntax
//     with every gunicorn atom (h l u t r m U q H s B b f a T M D L p
//     {name}i {name}o {name}e), %% for a literal %, and the presets
//     "common", "combined" (the default) and "json". An unknown atom or a
//     malformed format is a *SyntaxError naming the byte offset.
//   - Logger renders a compiled format for one request (Append) and wraps
//     an http.Handler (Wrap) to log every request it answers. Rendering
//     appends to a pooled buffer: no reflection, no allocation per request
//     in the steady state. The wrapping ResponseWriter passes Flush,
//     Hijack, ReadFrom (sendfile) and Push through and has Unwrap, so
//     http.ResponseController and the handlers inside see the server's
//     writer as if nothing were in between.
//   - Writer is a bounded asynchronous writer: Write copies the line into
//     a buffer of at most Limit bytes (1 MiB by default) and returns; one
//     goroutine, owned by the Writer and stopped by Close, drains the
//     buffer to the output. When the buffer is full (the disk is slow,
//     full, or a pipe reader stalls) the line is dropped, not queued and
//     not waited for: drops are counted (Dropped) and reported through
//     OnDrop, the first at once and then at most once per WarnInterval
//     (10 s by default), with the number dropped since the last report. Lines whose write failed
//     (ENOSPC, EIO) are counted the same way. Close flushes what is
//     buffered, waiting at most until its context ends.
//   - File is an append-only log file that can be reopened at its path
//     (logrotate: rename, then reopen). Reopen opens the path first and
//     only then swaps: when the path cannot be opened, the old file is
//     kept and the error returned. "-" is standard output, which is never
//     reopened.
//
// The text atoms follow gunicorn (glogging.py) with Apache's escaping:
// '"', '\' and bytes outside printable ASCII in client-controlled values
// are written as \" \\ \xhh, so no request can forge or split a line.
// Missing values are "-". %(t)s is the time the request started, in
// Apache's [02/Jan/2006:15:04:05 -0700] form; %(b)s is "-" for an empty
// body (Common Log Format), %(B)s the raw count.
package accesslog
