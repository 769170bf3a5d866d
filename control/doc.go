// Package control is paddock's control socket: an HTTP/1.1 + JSON API on a
// unix socket served by the master only (so curl --unix-socket works), and
// the client `paddock ctl` uses. It defines the Controller interface it
// drives; the master (package worker) implements it, and control never
// imports worker. See docs/control.md for the endpoints.
package control
