//go:build !(linux || darwin || freebsd || netbsd || openbsd)

package router

import "net"

// peekConn cannot look at a connection here: an idle connection is taken
// as it is, and a stale one fails at its first use.
func peekConn(net.Conn, []byte) (int, error) { return 0, nil }
