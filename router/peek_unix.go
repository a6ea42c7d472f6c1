//go:build linux || darwin || freebsd || netbsd || openbsd

package router

import (
	"crypto/tls"
	"io"
	"net"
	"syscall"
)

// peekConn looks, without waiting and without taking them, at the bytes
// that have arrived on nc (a TLS connection's are its records): n of
// them, copied into buf, or io.EOF once the other end has closed. No bytes
// and no error: nothing has arrived.
func peekConn(nc net.Conn, buf []byte) (int, error) {
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return 0, nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0, err
	}
	var n int
	var rerr error
	err = rc.Read(func(fd uintptr) bool {
		n, _, rerr = syscall.Recvfrom(int(fd), buf, syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return true // never wait: the answer is what is there now
	})
	switch {
	case err != nil:
		return 0, err
	case rerr == syscall.EAGAIN || rerr == syscall.EWOULDBLOCK:
		return 0, nil
	case rerr != nil:
		return 0, rerr
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}
