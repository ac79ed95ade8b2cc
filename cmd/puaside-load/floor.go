package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/puaside/puaside/config"
	"github.com/puaside/puaside/internal/udpio"
)

// The floor: the least a separate process spends on the exchange the
// tool measures for each mirrored REGISTER (the copy read and, on
// t_replicate, answered; a PUBLISH written; its 200 read), so that
// puaside's figure can be read against it. With -floor the tool runs
// itself as the target: started with puaside's command line (`run
// -config FILE`, see loadproc.StartPuaside), main hands over to relay,
// which reads the sockets of that configuration and, for each copy, does
// only the system calls puaside makes, on the socket layer puaside uses
// (internal/udpio), one goroutine per socket and no other work: no
// parsing beyond finding the AoR, no state, no store. Its CPU per
// REGISTER is the cost of the I/O pattern and its thread wake-ups on the
// host; puaside's minus it is what puaside's own work costs.

// floorCommand is the first argument that makes the tool the relay.
const floorCommand = "run"

// floorBody is a PIDF of the size of the one puaside publishes, so that
// the presence server and the kernel copy as much per PUBLISH.
const floorBody = `<?xml version="1.0" encoding="UTF-8"?>
<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model" entity="%s"><tuple id="t0"><status><basic>open</basic></status></tuple><dm:person id="p0"></dm:person></presence>`

// relayMain is main for `puaside-load run -config FILE`: it relays until
// SIGTERM or SIGINT, and exits 1 when it cannot start.
func relayMain(args []string) {
	var path string
	for i := 0; i+1 < len(args); i++ {
		if args[i] == "-config" {
			path = args[i+1]
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := relay(ctx, path); err != nil {
		fmt.Fprintln(os.Stderr, "puaside-load floor:", err)
		os.Exit(1)
	}
}

// relay runs the floor on the sockets of the configuration at path until
// ctx ends.
func relay(ctx context.Context, path string) error {
	cfg, err := config.Load(path)
	if err != nil {
		return err
	}
	hep := len(cfg.Ingest.HEPListen) > 0
	in := append(cfg.Ingest.HEPListen, cfg.Ingest.ReplicateListen...)
	if len(in) != 1 || len(cfg.PUA.Listen) != 1 {
		return fmt.Errorf("want one replicate or HEP listener and one pua listener, have %v and %v", in, cfg.PUA.Listen)
	}
	inConn, err := listenUDP(in[0])
	if err != nil {
		return err
	}
	defer inConn.Close()
	out, err := listenUDP(cfg.PUA.Listen[0])
	if err != nil {
		return err
	}
	defer out.Close()
	server, err := netip.ParseAddrPort(strings.TrimPrefix(cfg.PUA.ServerAddress, "sip:"))
	if err != nil {
		return fmt.Errorf("server_address %q: %w", cfg.PUA.ServerAddress, err)
	}
	ln, err := net.Listen("tcp", cfg.HTTP.HTTPListen)
	if err != nil {
		return fmt.Errorf("http_listen: %w", err)
	}
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" {
			http.NotFound(w, r)
		}
	}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = hs.Serve(ln) }()
	defer hs.Close()

	f := &floor{in: inConn, out: out, server: server, hep: hep, via: out.LocalAddr().String()}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); f.readCopies() }()
	go func() { defer wg.Done(); f.readReplies() }()
	<-ctx.Done()
	inConn.Close()
	out.Close()
	wg.Wait()
	return nil
}

// listenUDP binds a "udp:host:port" listener of the configuration.
func listenUDP(spec string) (*udpio.Conn, error) {
	hp, ok := strings.CutPrefix(spec, "udp:")
	if !ok {
		return nil, fmt.Errorf("listener %q is not UDP", spec)
	}
	ap, err := netip.ParseAddrPort(hp)
	if err != nil {
		return nil, fmt.Errorf("listener %q: %w", spec, err)
	}
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(ap))
	if err != nil {
		return nil, err
	}
	_ = c.SetReadBuffer(8 << 20)
	uc, err := udpio.New(c)
	if err != nil {
		c.Close()
		return nil, err
	}
	return uc, nil
}

// floor is the relay's state: its sockets and a PUBLISH counter.
type floor struct {
	in, out *udpio.Conn
	server  netip.AddrPort
	hep     bool
	via     string
	n       int
}

// readCopies reads the copies: each t_replicate copy is answered and
// published, a HEP capture published when it holds the 200.
func (f *floor) readCopies() {
	buf := make([]byte, 65536)
	var ans, pub []byte
	for {
		n, from, err := f.in.ReadFromUDPAddrPort(buf)
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			time.Sleep(time.Millisecond)
			continue
		}
		d := buf[:n]
		if f.hep {
			i := bytes.Index(d, []byte("SIP/2.0 200"))
			if i < 0 {
				continue // the REGISTER: its 200 publishes
			}
			d = d[i:]
		} else {
			ans = answer(ans[:0], d)
			_, _ = f.in.WriteToUDPAddrPort(ans, from)
		}
		aor, ok := toURI(d)
		if !ok {
			continue
		}
		f.n++
		pub = f.publish(pub[:0], aor)
		_, _ = f.out.WriteToUDPAddrPort(pub, f.server)
	}
}

// readReplies reads the presence server's replies and drops them.
func (f *floor) readReplies() {
	buf := make([]byte, 65536)
	for {
		_, _, err := f.out.ReadFromUDPAddrPort(buf)
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			time.Sleep(time.Millisecond)
		}
	}
}

// answer is the 200 of the request req: its Via, From, To, Call-ID and
// CSeq lines, as a stateless server sends it.
func answer(b, req []byte) []byte {
	b = append(b, "SIP/2.0 200 OK\r\n"...)
	for line := range bytes.SplitSeq(req, []byte("\r\n")) {
		if len(line) == 0 {
			break
		}
		for _, h := range []string{"Via:", "From:", "To:", "Call-ID:", "CSeq:"} {
			if len(line) >= len(h) && strings.EqualFold(string(line[:len(h)]), h) {
				b = append(append(b, line...), "\r\n"...)
			}
		}
	}
	return append(b, "Content-Length: 0\r\n\r\n"...)
}

// toURI is the URI of the message's To header line.
func toURI(m []byte) (string, bool) {
	i := bytes.Index(m, []byte("\r\nTo: <"))
	if i < 0 {
		return "", false
	}
	rest := m[i+len("\r\nTo: <"):]
	j := bytes.IndexByte(rest, '>')
	if j < 0 {
		return "", false
	}
	return string(rest[:j]), true
}

// publish is an initial PUBLISH of aor's presence.
func (f *floor) publish(b []byte, aor string) []byte {
	body := fmt.Sprintf(floorBody, aor)
	id := strconv.Itoa(f.n)
	b = fmt.Appendf(b, "PUBLISH %s SIP/2.0\r\n", aor)
	b = fmt.Appendf(b, "Via: SIP/2.0/UDP %s;branch=z9hG4bKfloor%s\r\n", f.via, id)
	b = fmt.Appendf(b, "From: <%s>;tag=floor%s\r\nTo: <%s>\r\n", aor, id, aor)
	b = fmt.Appendf(b, "Call-ID: floor-%s\r\nCSeq: 1 PUBLISH\r\nMax-Forwards: 70\r\n", id)
	b = fmt.Appendf(b, "Event: presence\r\nExpires: 3600\r\nContent-Type: application/pidf+xml\r\n")
	b = fmt.Appendf(b, "Content-Length: %d\r\n\r\n%s", len(body), body)
	return b
}
