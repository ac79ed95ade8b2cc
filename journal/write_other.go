//go:build !linux

package journal

import "os"

// writeRaw is os.File.Write where raw system calls are not made; slept is
// true, since it cannot be told.
func writeRaw(f *os.File, b []byte) (n int, ok, slept bool, err error) {
	n, err = f.Write(b)
	return n, true, true, err
}
