// Package listener turns bind specs into listening sockets, and keeps the
// rules for who owns them.
//
// # Binds
//
// Parse reads the addresses gunicorn and Paste users write (bind =
// host:port, [::1]:port, :port, unix:/path, fd://N, systemd:NAME; or host +
// port) and normalises them so one socket is opened once however it is
// spelled (localhost:8080 and 127.0.0.1:8080 share the key
// tcp/127.0.0.1:8080). Listen creates the socket with the options gunicorn
// exposes: backlog, reuse_port, and the file mode of a unix socket. Listen
// returns a net.Listener its caller owns; Set is the master's collection.
// The package imports nothing of paddock's but internal/regfile (a leaf
// of the standard library only), so the master, the worker and tests can
// all use it.
//
// # Descriptor ownership
//
//   - The master owns every listening socket for its whole life: it opens
//     a Set once and keeps it across worker churn and reloads, so closing
//     a worker never drops queued connections (docs/pitfalls.md E1, E2). A spec is
//     opened once per process: reopening an open tcp address fails with
//     EADDRINUSE, and fd://N is consumed by its first Listen. A reload
//     keeps the listener of every bind that did not change.
//   - Workers get duplicates: Set.Files dups every descriptor for
//     exec.Cmd.ExtraFiles, the master closes those files once the worker
//     started and then calls Set.RestoreNonblock (starting a process flips
//     the shared descriptor to blocking mode, docs/pitfalls.md D8). The worker
//     calls FromFiles, which makes listeners with net.FileListener (its
//     own dups) and closes the inherited *os.File.
//   - Everything is close-on-exec except what is put in ExtraFiles: Go
//     opens sockets CLOEXEC, Files and net.FileListener dup with CLOEXEC,
//     and Activated sets it on the descriptors systemd passed (docs/pitfalls.md E3).
//
// # Binary upgrades
//
// Open takes an Opener, which *tableflip.Fds satisfies: every spec,
// whatever its network, is requested under its normalised (network,
// address) key, so an upgraded master inherits the socket instead of
// binding again and racing the old one (docs/pitfalls.md D6). fd://N and
// systemd:NAME go through the Opener too: in tableflip's child the numbers
// mean something else (3 and 4 are tableflip's pipes) and LISTEN_FDS is
// gone, so the key is the only way back to the socket. A stale unix socket
// file is removed only when a socket is created, never for an inherited
// one (D7).
//
// Through an Opener, Close does not release a socket: tableflip keeps a
// duplicate to hand to the next master, until the upgrade or
// Upgrader.Stop. It also turns off unlink-on-close for unix sockets, so
// their files survive the handoff. The master therefore calls Set.Unlink
// after Close on a real stop (TERM, INT, QUIT), and never when it exits
// after handing over to a new master. Without an Opener, Close unlinks
// (Go's default) and Unlink finds nothing to do. A socket file left by a
// dead process is removed before a bind, but only after dialing it shows
// nobody answers; a file that is not a socket is never removed.
//
// # systemd socket activation
//
// Activated implements sd_listen_fds(3) by hand (about 70 lines with
// golang.org/x/sys/unix) rather than with go-systemd v22's activation
// package: that one reads the environment on every call (after the first
// call unsets it, later callers get nothing) and leaves owning the
// descriptors to each caller, while we need one owner that every Set and
// reload can get the same socket from; and the package would be a new
// module for one function. The environment is read once per process
// (LISTEN_PID must be our pid, LISTEN_FDS counts descriptors from 3,
// LISTEN_FDNAMES names them), then unset, so workers and an upgraded
// master never claim the numbers; the descriptors are made close-on-exec
// and kept open by the package, and each Listen gets a duplicate.
//
// A bind selects an activated socket by name, systemd:NAME, NAME being the
// socket unit's FileDescriptorName= (default: the unit's name): names are
// stable, while the order of descriptors across several socket units is
// not. fd://N selects one by number. A name that several descriptors share
// (one unit with two ListenStream=) is an error for systemd:NAME; give
// each socket unit its own name, or bind fd://N. When the config has no
// explicit bind (neither bind nor host/port) and the process was
// activated, the master serves on every activated socket: ActivatedSpecs
// returns their binds, and only when it returns none does the default
// 127.0.0.1:8080 apply. An upgraded master is not activated (LISTEN_FDS is
// gone), so the master must hand the effective bind list to it, not let it
// fall back to the default.
//
// # TLS
//
// LoadKeyPair reads gunicorn's certfile and keyfile (errors name the file):
// ReadKeyPair reads them (regular files only, so a FIFO never blocks the
// reader), ParseKeyPair parses bytes read elsewhere, as paddock's workers
// get them from a master that may be the only one allowed to read the
// key. A Certificate holds the pair a TLS listener serves behind an
// atomic.Pointer read by tls.Config.GetCertificate: Load re-reads the
// files (LoadPEM parses new bytes; NewCertificatePEM and StorePEM build
// and swap from bytes), Store swaps the result in, so a renewed certificate is served
// from the next handshake on without closing a connection, and a pair
// that fails to load is never stored. Certificate.Config offers TLS 1.2
// or newer and, through ALPN, the protocols the caller serves (h2,
// http/1.1). WrapTLS wraps a plain listener in TLS. Descriptors stay
// plain: the master hands out the plain socket, and each process that
// serves wraps its own listener, so HTTP/2 negotiates through
// http.Server.Serve on the wrapped listener.
//
// # PROXY protocol
//
// WrapProxy reads HAProxy's PROXY protocol header (v1 text, v2 binary)
// with github.com/pires/go-proxyproto (v0.15.0: v0.16 needs a newer Go
// than the project's) before TLS. From the peers an Allowed function
// accepts, the header's source address becomes the connection's
// RemoteAddr (required and of one version with v1/v2, optional with
// auto); from the others a header is read and dropped and the socket's own
// address kept. The header is read lazily, in the serving goroutine, with
// a deadline. See WrapProxy.
package listener
