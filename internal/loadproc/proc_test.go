package loadproc

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// A line of a Kamailio worker as proc(5) writes it: utime 250, stime 40,
// cutime 7, cstime 3 ticks.
const kamailioStat = "4242 (kamailio) S 4240 4240 4240 0 -1 4194624 9216 0 0 0 250 40 7 3 20 0 1 0 112233 123456789 2048 18446744073709551615 1 1 0 0 0 0 0 4096 16384 0 0 0 17 1 0 0 0 0 0\n"

func TestParseStat(t *testing.T) {
	s, err := ParseStat([]byte(kamailioStat))
	if err != nil {
		t.Fatal(err)
	}
	want := Stat{Pid: 4242, PPid: 4240, UTime: 2500 * time.Millisecond, STime: 400 * time.Millisecond, CUTime: 70 * time.Millisecond, CSTime: 30 * time.Millisecond}
	if s != want {
		t.Fatalf("ParseStat = %+v, want %+v", s, want)
	}
	if s.CPU() != 2900*time.Millisecond {
		t.Errorf("CPU = %s, want 2.9s", s.CPU())
	}
	// A command name with spaces and parentheses.
	odd := strings.Replace(kamailioStat, "(kamailio)", "(a) b (c))", 1)
	if s2, err := ParseStat([]byte(odd)); err != nil || s2 != want {
		t.Errorf("ParseStat(%q) = %+v, %v; want %+v", odd, s2, err, want)
	}
}

func TestParseStatErrors(t *testing.T) {
	for _, in := range []string{
		"",
		"4242 kamailio S 1",
		"(kamailio) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14",
		"x (kamailio) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14",
		"4242 (kamailio) S 4240 4240",
		"4242 (kamailio) S 4240 4240 4240 0 -1 4194624 9216 0 0 0 -250 40 7 3 20",
		"4242 (kamailio) S 4240 4240 4240 0 -1 4194624 9216 0 0 0 99999999999999999999 40 7 3 20",
		"4242 (kamailio) S x 4240 4240 0 -1 4194624 9216 0 0 0 250 40 7 3 20",
	} {
		if s, err := ParseStat([]byte(in)); !errors.Is(err, ErrStatFormat) {
			t.Errorf("ParseStat(%q) = %+v, %v; want ErrStatFormat", in, s, err)
		}
	}
}

func TestParseStatus(t *testing.T) {
	in := "Name:\tpuaside\nVmPeak:\t  900000 kB\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\nThreads:\t7\n"
	m, err := ParseStatus([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if m.RSS != 10<<20 || m.HWM != 20<<20 || MiB(m.RSS) != 10 {
		t.Fatalf("ParseStatus = %+v, want RSS 10 MiB, HWM 20 MiB", m)
	}
	for _, bad := range []string{"", "VmRSS:\t10 kB\n", "VmRSS:\tten kB\nVmHWM:\t1 kB\n", "VmRSS:\t10 MB\nVmHWM:\t1 kB\n", "VmRSS:\t-1 kB\nVmHWM:\t1 kB\n"} {
		if m, err := ParseStatus([]byte(bad)); !errors.Is(err, ErrStatusFormat) {
			t.Errorf("ParseStatus(%q) = %+v, %v; want ErrStatusFormat", bad, m, err)
		}
	}
}

// TestReadSelf reads this process's own figures: CPU grows with work, and
// the tree total includes the process itself.
func TestReadSelf(t *testing.T) {
	s0, err := ReadStat(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if s0.Pid != os.Getpid() || s0.PPid != os.Getppid() {
		t.Fatalf("ReadStat = %+v, want pid %d ppid %d", s0, os.Getpid(), os.Getppid())
	}
	x := 0
	for i := 0; i < 1e10; i++ { // bounded: stops as soon as a tick is seen
		x += i
		if i%1e6 == 0 {
			s1, err := ReadStat(os.Getpid())
			if err != nil {
				t.Fatal(err)
			}
			if s1.CPU() > s0.CPU() {
				break
			}
		}
	}
	s1, _ := ReadStat(os.Getpid())
	if s1.CPU() <= s0.CPU() {
		t.Fatalf("CPU did not grow with work: %s then %s (%d)", s0.CPU(), s1.CPU(), x)
	}
	tree, err := TreeCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if tree < s1.CPU() {
		t.Errorf("TreeCPU = %s, below the process's own %s", tree, s1.CPU())
	}
	m, err := ReadSelfMemory()
	if err != nil || m.RSS <= 0 || m.HWM < m.RSS {
		t.Errorf("ReadSelfMemory = %+v, %v", m, err)
	}
	if _, err := ReadStat(-1); err == nil {
		t.Error("ReadStat(-1) succeeded")
	}
}

// TestStartStop runs a shell as the measured program: ready once the URL
// answers 200, its descendants counted in TreeCPU, stopped by SIGTERM.
func TestStartStop(t *testing.T) {
	ready := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-ready:
		default:
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	time.AfterFunc(100*time.Millisecond, func() { close(ready) })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := Start(ctx, "/bin/sh", []string{"-c", "echo started; sleep 30 & wait"}, nil, nil, srv.URL, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Kill()
	if _, err := p.Stat(); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Memory(); err != nil {
		t.Fatal(err)
	}
	if _, err := TreeCPU(p.Pid()); err != nil {
		t.Fatal(err)
	}
	if err := p.Stop(time.Second); err == nil {
		t.Error("Stop: a shell killed by SIGTERM reported a clean exit")
	}
	if !strings.Contains(p.Output(), "started") {
		t.Errorf("Output = %q, want the shell's line", p.Output())
	}
	if _, err := ReadStat(p.Pid()); err == nil {
		t.Error("process still there after Stop")
	}
}

// TestStartNotReady: a program that exits before its URL answers is an error.
func TestStartNotReady(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	port, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	_, err = Start(ctx, "/bin/sh", []string{"-c", "echo bye"}, nil, nil, "http://127.0.0.1:"+strconv.Itoa(port)+"/readyz", 10*time.Second)
	if err == nil || !strings.Contains(err.Error(), "bye") {
		t.Fatalf("Start of an exiting program: %v, want an error with its output", err)
	}
}

func FuzzParseStat(f *testing.F) {
	f.Add([]byte(kamailioStat))
	f.Add([]byte("1 (a) b (c)) S 0 1 1 0 -1 0 0 0 0 0 1 2 3 4 20"))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseStat(b)
		if err != nil {
			if !errors.Is(err, ErrStatFormat) {
				t.Fatalf("error %v is not ErrStatFormat", err)
			}
			return
		}
		if s.Pid <= 0 || s.PPid < 0 || s.UTime < 0 || s.STime < 0 || s.CUTime < 0 || s.CSTime < 0 {
			t.Fatalf("ParseStat(%q) = %+v: negative field", b, s)
		}
	})
}

func FuzzParseStatus(f *testing.F) {
	f.Add([]byte("VmHWM:\t20480 kB\nVmRSS:\t10240 kB\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseStatus(b)
		if err != nil {
			if !errors.Is(err, ErrStatusFormat) {
				t.Fatalf("error %v is not ErrStatusFormat", err)
			}
			return
		}
		if m.RSS < 0 || m.HWM < 0 {
			t.Fatalf("ParseStatus(%q) = %+v: negative", b, m)
		}
	})
}
