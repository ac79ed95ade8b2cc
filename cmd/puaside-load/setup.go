package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime/pprof"
	"runtime/trace"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/puaside/puaside/config"
)

// profiles say what the run records of this process (without -proc,
// puaside runs in it).
type profiles struct {
	CPU   string // a CPU profile ("": none)
	Trace string // an execution trace, for go tool trace ("": none)
}

// start writes the profiles until the returned stop is called.
func (p profiles) start() (stop func(), err error) {
	var stops []func()
	stop = func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}
	for _, pr := range []struct {
		name, path string
		start      func(io.Writer) error
		stop       func()
	}{
		{"cpuprofile", p.CPU, pprof.StartCPUProfile, pprof.StopCPUProfile},
		{"trace", p.Trace, trace.Start, trace.Stop},
	} {
		if pr.path == "" {
			continue
		}
		f, err := os.Create(pr.path)
		if err != nil {
			stop()
			return nil, fmt.Errorf("%s: %w", pr.name, err)
		}
		if err := pr.start(f); err != nil {
			f.Close()
			stop()
			return nil, fmt.Errorf("%s: %w", pr.name, err)
		}
		stops = append(stops, func() { pr.stop(); f.Close() })
	}
	return stop, nil
}

// targetOptions say how to run the daemon under measurement.
type targetOptions struct {
	Proc  bool      // run the binary as a separate process
	Bin   string    // with Proc: the binary ("": build it into dir)
	Input string    // the mirrored input it listens for
	Log   io.Writer // its warnings (nil: discarded)
}

// startTarget starts puaside with cfg, in this process or, with o.Proc, as
// a separate process (built into dir unless o.Bin names the binary).
func startTarget(ctx context.Context, o targetOptions, cfg config.Config, dir string) (puaside, error) {
	logw := o.Log
	if logw == nil {
		logw = io.Discard
	}
	if !o.Proc {
		return startInProcess(ctx, cfg, o.Input, logw)
	}
	bin := o.Bin
	if bin == "" {
		var err error
		if bin, err = buildPuaside(ctx, dir); err != nil {
			return nil, err
		}
	}
	return startSeparate(ctx, bin, cfg, o.Input, dir, logw)
}

// baseConfig is the configuration every measurement starts from: warnings
// only, the database at dbURL (empty: SQLite in dir), the engine on a free
// loopback port publishing to server (host:port), no ingest listener and
// the management server on a free loopback port.
func baseConfig(dbURL, dir, server string) config.Config {
	cfg := config.Default()
	cfg.LogLevel = "warn"
	cfg.DBURL = dbURL
	if cfg.DBURL == "" {
		cfg.DBURL = "sqlite://" + filepath.Join(dir, "puaside.db")
	}
	cfg.PUA.Listen = []string{"udp:127.0.0.1:0"}
	cfg.PUA.ServerAddress = "sip:" + server
	cfg.Ingest.ReplicateListen = nil
	cfg.Ingest.TraceListen = nil
	cfg.Ingest.HEPListen = nil
	cfg.HTTP.HTTPListen = "127.0.0.1:0"
	return cfg
}

// startRun starts what every measurement runs around its fake presence
// server: the profiles (prof), a temporary directory and
// puaside with the configuration cfg builds for that directory. stop
// undoes them in reverse order.
func startRun(ctx context.Context, prof profiles, o targetOptions, cfg func(dir string) config.Config) (ps puaside, stop func(), err error) {
	stopProfile, err := prof.start()
	if err != nil {
		return nil, nil, err
	}
	dir, err := os.MkdirTemp("", "puaside-load-")
	if err != nil {
		stopProfile()
		return nil, nil, fmt.Errorf("temp dir: %w", err)
	}
	ps, err = startTarget(ctx, o, cfg(dir), dir)
	if err != nil {
		os.RemoveAll(dir)
		stopProfile()
		return nil, nil, err
	}
	return ps, func() {
		ps.stop()
		os.RemoveAll(dir)
		stopProfile()
	}, nil
}

// report prints r (as JSON with asJSON) or, on err, exits with it.
func report(r interface{ print(io.Writer) }, err error, asJSON bool) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "puaside-load:", err)
		os.Exit(1)
	}
	if asJSON {
		_ = json.NewEncoder(os.Stdout).Encode(r)
		return
	}
	r.print(os.Stdout)
}

// publishServer is the socket and loop shared by the stateless fake
// presence servers: every PUBLISH gets a 200 with a SIP-ETag and the
// Expires asked for, any other request but ACK a 405.
type publishServer struct {
	conn   *net.UDPConn
	parser *sip.Parser
	etag   atomic.Uint64
	wg     sync.WaitGroup
}

// listen opens the server's socket on a free 127.0.0.1 port.
func (s *publishServer) listen() error {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return fmt.Errorf("fake presence server: %w", err)
	}
	_ = c.SetReadBuffer(8 << 20)
	s.conn, s.parser = c, sip.NewParser()
	return nil
}

// start runs two readers on the socket, so that parsing keeps up; each
// PUBLISH is handed to record with its Expires ("3600" when absent) and
// its arrival (Unix ns).
func (s *publishServer) start(record func(req *sip.Request, exp string, now int64)) {
	for range 2 {
		s.wg.Add(1)
		go s.serve(record)
	}
}

func (s *publishServer) addr() string { return s.conn.LocalAddr().String() }

func (s *publishServer) close() {
	s.conn.Close()
	s.wg.Wait()
}

// serve answers requests until the socket is closed.
func (s *publishServer) serve(record func(req *sip.Request, exp string, now int64)) {
	defer s.wg.Done()
	buf := make([]byte, 65536)
	var sb strings.Builder
	for {
		n, from, err := s.conn.ReadFromUDPAddrPort(buf)
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			time.Sleep(time.Millisecond) // a persistent error must not spin
			continue
		}
		now := time.Now().UnixNano()
		msg, err := s.parser.ParseSIP(buf[:n])
		if err != nil {
			continue
		}
		req, ok := msg.(*sip.Request)
		if !ok || req.Method == sip.ACK {
			continue
		}
		code, reason := 200, "OK"
		exp := "3600"
		if h := req.GetHeader("Expires"); h != nil {
			exp = h.Value()
		}
		if req.Method != sip.PUBLISH {
			code, reason = 405, "Method Not Allowed"
		} else {
			record(req, exp, now)
		}
		res := sip.NewResponseFromRequest(req, code, reason, nil)
		if code == 200 {
			res.AppendHeader(sip.NewHeader("SIP-ETag", "e"+strconv.FormatUint(s.etag.Add(1), 36)))
			res.AppendHeader(sip.NewHeader("Expires", exp))
		}
		sb.Reset()
		res.StringWrite(&sb)
		_, _ = s.conn.WriteToUDPAddrPort([]byte(sb.String()), from)
	}
}
