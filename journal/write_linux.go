//go:build linux

package journal

import (
	"io"
	"os"
	"syscall"
	"unsafe"
)

// writeRaw writes all of b to f with raw write(2) calls, continuing a
// short write and retrying one interrupted, as os.File.Write does. ok is
// false, and nothing is written, when f's descriptor cannot be reached
// (a closed file): os.File.Write then says why.
func writeRaw(f *os.File, b []byte) (n int, ok bool, err error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return 0, false, nil
	}
	var errno syscall.Errno
	cerr := rc.Write(func(fd uintptr) bool {
		for n < len(b) {
			r, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&b[n])), uintptr(len(b)-n))
			switch {
			case e == syscall.EINTR:
				continue
			case e != 0:
				errno = e
				return true
			case r == 0:
				return true
			}
			n += int(r)
		}
		return true
	})
	switch {
	case cerr != nil: // before the call: the file is closed
		return 0, false, nil
	case errno != 0:
		return n, true, &os.PathError{Op: "write", Path: f.Name(), Err: errno}
	case n < len(b):
		return n, true, io.ErrShortWrite
	}
	return n, true, nil
}
