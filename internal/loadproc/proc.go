package loadproc

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Errors of the /proc parsers; test with errors.Is.
var (
	// ErrStatFormat: a /proc/PID/stat line that does not have the fields
	// of proc(5).
	ErrStatFormat = errors.New("loadproc: malformed /proc/PID/stat")
	// ErrStatusFormat: a VmRSS or VmHWM line of /proc/PID/status that is
	// not "<n> kB", or a status without them.
	ErrStatusFormat = errors.New("loadproc: malformed /proc/PID/status")
)

// Stat is the part of /proc/PID/stat a measurement needs.
type Stat struct {
	Pid, PPid int
	// UTime and STime are the time the process spent in user and kernel
	// mode (all its threads); CUTime and CSTime are those of its children
	// that exited and were waited for.
	UTime, STime, CUTime, CSTime time.Duration
}

// CPU is the process's own CPU time, user + system.
func (s Stat) CPU() time.Duration { return s.UTime + s.STime }

// ReadStat reads /proc/PID/stat.
func ReadStat(pid int) (Stat, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return Stat{}, fmt.Errorf("loadproc: %w", err)
	}
	return ParseStat(b)
}

// ParseStat parses one /proc/PID/stat line (proc(5)). The command name in
// parentheses may itself hold spaces and parentheses, so the fields are
// counted from the last ')'.
func ParseStat(b []byte) (Stat, error) {
	open := bytes.IndexByte(b, '(')
	end := bytes.LastIndexByte(b, ')')
	if open < 1 || end < open {
		return Stat{}, fmt.Errorf("%w: no (comm)", ErrStatFormat)
	}
	var s Stat
	pid, err := strconv.Atoi(string(bytes.TrimSpace(b[:open])))
	if err != nil || pid <= 0 {
		return Stat{}, fmt.Errorf("%w: pid %q", ErrStatFormat, bytes.TrimSpace(b[:open]))
	}
	s.Pid = pid
	// Fields after comm start with field 3 (state); utime is field 14.
	f := strings.Fields(string(b[end+1:]))
	if len(f) < 15 {
		return Stat{}, fmt.Errorf("%w: %d fields after comm, want at least 15", ErrStatFormat, len(f))
	}
	if s.PPid, err = strconv.Atoi(f[1]); err != nil || s.PPid < 0 {
		return Stat{}, fmt.Errorf("%w: ppid %q", ErrStatFormat, f[1])
	}
	for i, d := range []*time.Duration{&s.UTime, &s.STime, &s.CUTime, &s.CSTime} {
		v, err := strconv.ParseUint(f[11+i], 10, 63)
		if err != nil || v > uint64(1<<62)/uint64(time.Second) {
			return Stat{}, fmt.Errorf("%w: field %d %q", ErrStatFormat, 14+i, f[11+i])
		}
		*d = time.Duration(v) * time.Second / UserHZ
	}
	return s, nil
}

// TreeCPU is the CPU time of the process pid and of every live descendant
// of it, plus the children it already reaped (its CUTime + CSTime): the
// cost of a forking server such as Kamailio, whose workers are children of
// its main process.
func TreeCPU(pid int) (time.Duration, error) {
	root, err := ReadStat(pid)
	if err != nil {
		return 0, err
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0, fmt.Errorf("loadproc: %w", err)
	}
	children := map[int][]Stat{}
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil || p == pid {
			continue
		}
		s, err := ReadStat(p)
		if err != nil {
			continue // gone meanwhile, or not a process
		}
		children[s.PPid] = append(children[s.PPid], s)
	}
	total := root.CPU() + root.CUTime + root.CSTime
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range children[p] {
			total += c.CPU() + c.CUTime + c.CSTime
			queue = append(queue, c.Pid)
		}
	}
	return total, nil
}

// Memory is a process's resident memory, in bytes.
type Memory struct {
	RSS, HWM int64 // VmRSS and VmHWM
}

// ReadMemory reads VmRSS and VmHWM from /proc/PID/status.
func ReadMemory(pid int) (Memory, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return Memory{}, fmt.Errorf("loadproc: %w", err)
	}
	return ParseStatus(b)
}

// ReadSelfMemory reads VmRSS and VmHWM of the calling process.
func ReadSelfMemory() (Memory, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return Memory{}, fmt.Errorf("loadproc: %w", err)
	}
	return ParseStatus(b)
}

// ParseStatus reads VmRSS and VmHWM from the text of /proc/PID/status.
func ParseStatus(b []byte) (Memory, error) {
	var m Memory
	var have int
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		num, unit, _ := strings.Cut(strings.TrimSpace(v), " ")
		kb, err := strconv.ParseInt(num, 10, 64)
		if err != nil || unit != "kB" || kb < 0 || kb > 1<<40 {
			return Memory{}, fmt.Errorf("%w: %s %q", ErrStatusFormat, k, v)
		}
		if k == "VmRSS" {
			m.RSS = kb << 10
			have |= 1
		} else {
			m.HWM = kb << 10
			have |= 2
		}
	}
	if err := sc.Err(); err != nil {
		return Memory{}, fmt.Errorf("%w: %w", ErrStatusFormat, err)
	}
	if have != 3 {
		return Memory{}, fmt.Errorf("%w: no VmRSS and VmHWM", ErrStatusFormat)
	}
	return m, nil
}

// MiB converts bytes to MiB.
func MiB(n int64) float64 { return float64(n) / (1 << 20) }
