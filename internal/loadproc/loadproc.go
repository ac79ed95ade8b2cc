// Package loadproc runs a program under measurement as a separate process
// and reads that process's own cost from /proc: CPU time (utime + stime of
// /proc/PID/stat, optionally summed over its descendants, as for Kamailio's
// forked workers) and resident memory (VmRSS, VmHWM of /proc/PID/status).
//
// It stands beside the flow (ingest → trackers → pua engine → SIP and
// store) rather than in it: cmd/puaside-load uses it to run the built
// puaside binary with a generated configuration file, and the end-to-end
// benchmarks use the same readers for the Kamailio registrar. Linux only.
package loadproc

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/puaside/puaside/internal/freeport"
)

// UserHZ is the unit of the CPU time fields of /proc/PID/stat (the
// kernel's USER_HZ, which Linux fixes at 100 ticks a second on every
// architecture Go supports).
const UserHZ = 100

// Build builds the Go command package pkg (e.g. "./cmd/puaside") of the
// module at root into dir and returns the binary's absolute path.
func Build(ctx context.Context, root, pkg, dir string) (string, error) {
	bin, err := filepath.Abs(filepath.Join(dir, filepath.Base(pkg)))
	if err != nil {
		return "", fmt.Errorf("loadproc: build %s: %w", pkg, err)
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, pkg)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("loadproc: go build %s: %w\n%s", pkg, err, out)
	}
	return bin, nil
}

// FreePort returns a loopback port free for both UDP and TCP at the time of
// the call (internal/freeport).
func FreePort() (int, error) { return freeport.Port() }

// Proc is one running program in its own process group.
type Proc struct {
	cmd    *exec.Cmd
	out    *syncBuffer
	exited chan struct{}
	err    error // Wait's result, valid once exited is closed
}

// Start runs bin with args in its own process group, its output kept (see
// Output) and copied to logw if not nil. When readyURL is not empty, Start
// waits until a GET of it answers 200, at most limit; a process that exits
// or is not ready in time is killed and reported.
func Start(ctx context.Context, bin string, args []string, env []string, logw io.Writer, readyURL string, limit time.Duration) (*Proc, error) {
	p := &Proc{out: &syncBuffer{w: logw}, exited: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = env
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("loadproc: start %s: %w", bin, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	if readyURL == "" {
		return p, nil
	}
	hc := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(limit)
	for {
		select {
		case <-p.exited:
			return nil, fmt.Errorf("loadproc: %s exited before ready (%v):\n%s", bin, p.err, p.Output())
		case <-ctx.Done():
			p.Kill()
			return nil, fmt.Errorf("loadproc: %s: %w", bin, ctx.Err())
		default:
		}
		if resp, err := hc.Get(readyURL); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p, nil
			}
		}
		if time.Now().After(deadline) {
			p.Kill()
			return nil, fmt.Errorf("loadproc: %s not ready at %s within %s:\n%s", bin, readyURL, limit, p.Output())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Pid is the process id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Output is what the process wrote to stdout and stderr so far.
func (p *Proc) Output() string { return p.out.String() }

// Stat reads the process's own CPU time (not its descendants').
func (p *Proc) Stat() (Stat, error) { return ReadStat(p.Pid()) }

// Memory reads the process's VmRSS and VmHWM.
func (p *Proc) Memory() (Memory, error) { return ReadMemory(p.Pid()) }

// Stop sends SIGTERM to the process and waits up to limit for it to exit,
// then kills its process group. It returns the exit error of a process
// that did not exit cleanly after SIGTERM.
func (p *Proc) Stop(limit time.Duration) error {
	select {
	case <-p.exited:
		return p.err
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		return p.err
	case <-time.After(limit):
		p.Kill()
		return fmt.Errorf("loadproc: pid %d still running %s after SIGTERM, killed", p.Pid(), limit)
	}
}

// Kill sends SIGKILL to the process group and waits (at most 10 s) for the
// process to exit. Safe to call more than once.
func (p *Proc) Kill() {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
	}
}

// syncBuffer is an io.Writer safe for the two output pipes, teeing to w.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
	w  io.Writer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.w != nil {
		_, _ = s.w.Write(p)
	}
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
