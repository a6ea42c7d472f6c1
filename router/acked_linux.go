package router

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// ackedBytes is how many bytes written to nc its peer has acknowledged
// (TCP_INFO's tcpi_bytes_acked): it rises while the peer reads, even when
// the kernel has not yet woken a writer blocked on a full send queue
// (Linux wakes one only once its free space is half of what is queued,
// that is once a third of a full queue has drained: with a queue of
// megabytes, a slow reader's writer can wait longer than the write
// timeout). ok false: not a TCP connection, or the kernel did not say.
func ackedBytes(nc net.Conn) (n uint64, ok bool) {
	sc, isSys := nc.(syscall.Conn)
	if !isSys {
		return 0, false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0, false
	}
	var info *unix.TCPInfo
	var ierr error
	if err := rc.Control(func(fd uintptr) {
		info, ierr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	}); err != nil || ierr != nil {
		return 0, false
	}
	return info.Bytes_acked, true
}
