//go:build linux

package journal

import (
	"io"
	"os"
	"syscall"
	"unsafe"
)

// rusageThread is getrusage(2)'s RUSAGE_THREAD: the calling thread's.
const rusageThread = 1

// voluntarySwitches is the number of times the calling thread has given
// up its processor to wait (ru_nvcsw); -1 when it cannot be read.
func voluntarySwitches() int64 {
	var ru syscall.Rusage
	if _, _, e := syscall.RawSyscall(syscall.SYS_GETRUSAGE, rusageThread, uintptr(unsafe.Pointer(&ru)), 0); e != 0 {
		return -1
	}
	return ru.Nvcsw
}

// writeRaw writes all of b to f with raw write(2) calls, continuing a
// short write and retrying one interrupted, as os.File.Write does. ok is
// false, and nothing is written, when f's descriptor cannot be reached
// (a closed file): os.File.Write then says why. slept says whether the
// thread waited in the kernel during the writes (a voluntary context
// switch: a throttled disk, memory being reclaimed), as opposed to being
// preempted; it is true when that cannot be told.
func writeRaw(f *os.File, b []byte) (n int, ok, slept bool, err error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return 0, false, false, nil
	}
	var errno syscall.Errno
	cerr := rc.Write(func(fd uintptr) bool {
		// Raw calls do not hand the thread on: the two counts are of
		// one thread unless the goroutine is preempted and moved
		// between them (rare), and then the write counts as slept, the
		// cautious answer.
		before := voluntarySwitches()
		defer func() {
			after := voluntarySwitches()
			slept = before < 0 || after < 0 || after != before
		}()
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
		return 0, false, false, nil
	case errno != 0:
		return n, true, slept, &os.PathError{Op: "write", Path: f.Name(), Err: errno}
	case n < len(b):
		return n, true, slept, io.ErrShortWrite
	}
	return n, true, slept, nil
}
