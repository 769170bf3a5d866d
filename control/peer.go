package control

import (
	"context"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"

	"golang.org/x/sys/unix"
)

// Peer is the process at the other end of a control connection, from
// SO_PEERCRED at accept time.
type Peer struct {
	UID uint32
	GID uint32
	PID int32
	// Known is false when the credentials could not be read (not a unix
	// socket, or getsockopt failed): such a peer is refused.
	Known bool
}

func (p Peer) uidString() string {
	if !p.Known {
		return "unknown"
	}
	return strconv.FormatUint(uint64(p.UID), 10)
}

type peerKey struct{}

// PeerFrom returns the peer ConnContext recorded for the request's
// connection.
func PeerFrom(ctx context.Context) (Peer, bool) {
	p, ok := ctx.Value(peerKey{}).(Peer)
	return p, ok
}

// connContext is http.Server.ConnContext: it reads the peer's credentials
// once per connection.
func connContext(ctx context.Context, c net.Conn) context.Context {
	p, _ := peerCred(c)
	return context.WithValue(ctx, peerKey{}, p)
}

// peerCred reads SO_PEERCRED from a unix socket connection.
func peerCred(c net.Conn) (Peer, error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return Peer{}, fmt.Errorf("control: peer credentials: %T is not a unix socket", c)
	}
	rc, err := uc.SyscallConn()
	if err != nil {
		return Peer{}, fmt.Errorf("control: peer credentials: %w", err)
	}
	var (
		cred *unix.Ucred
		gerr error
	)
	if err := rc.Control(func(fd uintptr) {
		cred, gerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return Peer{}, fmt.Errorf("control: peer credentials: %w", err)
	}
	if gerr != nil {
		return Peer{}, fmt.Errorf("control: peer credentials: %w", gerr)
	}
	return Peer{UID: cred.Uid, GID: cred.Gid, PID: cred.Pid, Known: true}, nil
}

func defaultAllowedUIDs() []uint32 {
	uid := uint32(os.Getuid())
	if uid == 0 {
		return []uint32{0}
	}
	return []uint32{uid, 0}
}

func (s *Server) peerAllowed(p Peer) bool {
	return p.Known && slices.Contains(s.allowed, p.UID)
}
