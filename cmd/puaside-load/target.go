package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/puaside/puaside/config"
	"github.com/puaside/puaside/ingest"
	"github.com/puaside/puaside/internal/daemon"
	"github.com/puaside/puaside/internal/loadproc"
)

// Inputs the tool can play.
const (
	inputReplicate = ingest.InputReplicate // the proxy's t_replicate() after save()
	inputHEP       = ingest.InputHEP       // the registrar's siptrace HEPv3 copies of REGISTER and its 200
	inputTrace     = ingest.InputTrace     // the proxy's siptrace plain copies (call mode)
)

// puaside is the daemon under measurement: in this process, or the built
// binary as a separate process.
type puaside interface {
	// input is the UDP address of the ingest listener the sender plays.
	input() *net.UDPAddr
	// httpAddr is the management server (host:port).
	httpAddr() string
	// puaAddr is the engine's SIP socket (host:port).
	puaAddr() string
	// cpu is the CPU time measured: this whole process in-process, the
	// daemon's own process otherwise.
	cpu() time.Duration
	// memory is the daemon's resident memory (this process in-process).
	memory() (loadproc.Memory, error)
	// separate reports whether the daemon runs in its own process.
	separate() bool
	stop()
}

// inProcess is internal/daemon in this process.
type inProcess struct {
	d  *daemon.Daemon
	in *net.UDPAddr
}

func startInProcess(ctx context.Context, cfg config.Config, input string, logw io.Writer) (*inProcess, error) {
	log := slog.New(slog.NewTextHandler(logw, &slog.HandlerOptions{Level: slog.LevelWarn}))
	sctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	d, err := daemon.New(sctx, cfg, log)
	if err != nil {
		return nil, fmt.Errorf("puaside: %w", err)
	}
	if err := d.Start(sctx); err != nil {
		return nil, fmt.Errorf("puaside: %w", err)
	}
	p := &inProcess{d: d}
	if p.in, err = udpListen(d.Addrs(), input); err != nil {
		p.stop()
		return nil, err
	}
	return p, nil
}

func (p *inProcess) input() *net.UDPAddr { return p.in }
func (p *inProcess) httpAddr() string {
	if h := p.d.Addrs()["http"]; len(h) > 0 {
		return h[0]
	}
	return ""
}
func (p *inProcess) puaAddr() string                  { return puaAddr(p.d.Engine().ContactURI()) }
func (p *inProcess) cpu() time.Duration               { return cpuTime() }
func (p *inProcess) memory() (loadproc.Memory, error) { return loadproc.ReadSelfMemory() }
func (p *inProcess) separate() bool                   { return false }
func (p *inProcess) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_ = p.d.Stop(ctx)
}

// udpListen finds the daemon's bound UDP listener for input
// (replicate_listen or hep_listen).
func udpListen(addrs map[string][]string, input string) (*net.UDPAddr, error) {
	for _, a := range addrs[input] {
		if hp, ok := strings.CutPrefix(a, "udp:"); ok {
			ua, err := net.ResolveUDPAddr("udp4", hp)
			if err != nil {
				return nil, fmt.Errorf("%s listener %q: %w", input, a, err)
			}
			return ua, nil
		}
	}
	return nil, fmt.Errorf("no UDP %s listener among %v", input, addrs)
}

// separateProcess is the puaside binary run with a configuration file
// written for the run (`puaside run -config FILE`).
type separateProcess struct {
	p         *loadproc.Proc
	in        *net.UDPAddr
	http, pua string
}

// startSeparate runs bin on cfg, with free loopback ports for its sockets
// (loadproc.StartPuaside), until /readyz answers.
func startSeparate(ctx context.Context, bin string, cfg config.Config, input, dir string, logw io.Writer) (*separateProcess, error) {
	var ports [3]int
	for i := range ports {
		p, err := loadproc.FreePort()
		if err != nil {
			return nil, err
		}
		ports[i] = p
	}
	s := &separateProcess{
		in:   &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: ports[0]},
		pua:  "127.0.0.1:" + strconv.Itoa(ports[1]),
		http: "127.0.0.1:" + strconv.Itoa(ports[2]),
	}
	cfg.PUA.Listen = []string{"udp:" + s.pua}
	cfg.HTTP.HTTPListen = s.http
	listen := []string{"udp:" + s.in.String()}
	switch input {
	case inputHEP:
		cfg.Ingest.HEPListen = listen
	case inputTrace:
		cfg.Ingest.TraceListen = listen
	default:
		cfg.Ingest.ReplicateListen = listen
	}
	var err error
	s.p, err = loadproc.StartPuaside(ctx, bin, cfg, dir, logw, time.Minute)
	if err != nil {
		return nil, fmt.Errorf("puaside: %w", err)
	}
	return s, nil
}

func (s *separateProcess) input() *net.UDPAddr { return s.in }
func (s *separateProcess) httpAddr() string    { return s.http }
func (s *separateProcess) puaAddr() string     { return s.pua }
func (s *separateProcess) cpu() time.Duration {
	st, err := s.p.Stat()
	if err != nil {
		return 0
	}
	return st.CPU()
}
func (s *separateProcess) memory() (loadproc.Memory, error) { return s.p.Memory() }
func (s *separateProcess) separate() bool                   { return true }
func (s *separateProcess) stop()                            { _ = s.p.Stop(time.Minute) }

// buildPuaside builds ./cmd/puaside of the module containing the working
// directory into dir.
func buildPuaside(ctx context.Context, dir string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	return loadproc.Build(ctx, ".", "github.com/puaside/puaside/cmd/puaside", dir)
}
