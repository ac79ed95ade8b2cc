//go:build !linux

package journal

import "os"

// writeRaw is os.File.Write where raw system calls are not made.
func writeRaw(f *os.File, b []byte) (n int, ok bool, err error) {
	n, err = f.Write(b)
	return n, true, err
}
