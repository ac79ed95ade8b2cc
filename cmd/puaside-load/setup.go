package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/puaside/puaside/config"
)

// startCPUProfile writes a CPU profile to path until the returned stop is
// called; with an empty path it does nothing.
func startCPUProfile(path string) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("cpuprofile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
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
