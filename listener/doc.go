// Package listener turns bind specs into listening sockets.
//
// It parses the addresses gunicorn and Paste users write (bind = host:port,
// [::1]:port, :port, unix:/path, fd://N; or host + port), normalises them so
// one socket is opened once however it is spelled (localhost:8080 and
// 127.0.0.1:8080 share the key tcp/127.0.0.1:8080), and creates the socket
// with the options gunicorn exposes: backlog, reuse_port, and the file mode
// of a unix socket.
//
// The package owns no state: Listen returns a net.Listener and the caller
// owns it (closes it, hands its fd to a worker). It imports nothing of
// paddock's, so the master, the worker and tests can all use it.
//
// Unix sockets: a socket file left by a dead process is removed before the
// bind, but only after dialing it shows nobody answers; a file that is not a
// socket is never removed. Closing a listener from Listen unlinks its socket
// file (Go's default), which is right for a process that serves alone; the
// binary-upgrade path will keep the file instead.
package listener
