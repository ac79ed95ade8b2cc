package ingest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/puaside/puaside/internal/udpio"
)

// Framing errors of the TCP inputs; the connection is closed after one.
var (
	errFrameTooLarge    = errors.New("message larger than max_message_size")
	errNoContentLength  = errors.New("stream message without Content-Length")
	errBadContentLength = errors.New("bad Content-Length")
)

// serveUDP reads datagrams until the socket is closed. One datagram is one
// SIP message or one HEP packet.
func (in *Ingest) serveUDP(input string, uc *net.UDPConn) {
	defer in.readers.Done()
	var pc udpConn = plainUDP{uc}
	if c, err := udpio.New(uc); err == nil {
		pc = c
	}
	buf := make([]byte, in.cfg.MaxMessageSize+1)
	p := newPace()
	for {
		n, src, waited, err := pc.ReadWaited(buf)
		here := p.read(waited)
		if err != nil {
			if errors.Is(err, net.ErrClosed) || in.stopped.Load() {
				return
			}
			if in.logLim.Allow("read/"+input, in.now()) {
				in.log.Warn("ingest: read error", "input", input, "err", err)
			}
			time.Sleep(10 * time.Millisecond) // a persistent error must not spin
			continue
		}
		src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
		if !in.allowed(input, src.Addr()) {
			continue
		}
		if n > in.cfg.MaxMessageSize {
			in.bad(input, reasonOversize, src, fmt.Errorf("datagram over %d bytes", in.cfg.MaxMessageSize))
			continue
		}
		b := buf[:n]
		if input == InputHEP {
			in.handleHEP(src, b, here)
			continue
		}
		in.handleSIP(input, src, b, func(res []byte) {
			if _, err := pc.WriteToUDPAddrPort(res, src); err != nil && in.logLim.Allow("write/"+input, in.now()) {
				in.log.Warn("ingest: cannot answer replicated request", "input", input, "dst", src.String(), "err", err)
			}
		}, here)
	}
}

// readerSpare is how many datagrams a UDP reader may still deliver itself
// after one it waited for, when they were already waiting: the reply
// copy that follows a request copy (siptrace, HEP) takes the same path as
// the request, and so do the few copies that queued in the socket while
// the reader was held up (preempted by a woken peer, or behind a store
// write), instead of each waking a worker; a burst is handed to the
// workers after this many. 8 against 1 saved 3 % of the CPU of a
// t_replicate REGISTER, 11 % of a HEP pair and 8 % of a call; 32 no more
// (BENCHMARKS.md).
const readerSpare = 8

// pace tells a UDP reader whether it is behind.
type pace struct {
	behind int // reads in a row that found a datagram waiting
}

// newPace is the pace of a reader that has not waited yet: behind.
func newPace() pace { return pace{behind: readerSpare + 1} }

// read notes a read (waited: the socket was empty before it) and reports
// whether the reader is not behind, so that it may deliver what it read
// itself (enqueue's here): it waited for this datagram, or read at most
// readerSpare more after one it waited for.
func (p *pace) read(waited bool) bool {
	switch {
	case waited:
		p.behind = 0
	case p.behind <= readerSpare:
		p.behind++
	}
	return p.behind <= readerSpare
}

// udpConn is what serveUDP needs of its socket: the socket through
// udpio, or plainUDP where that fails.
type udpConn interface {
	ReadWaited(b []byte) (int, netip.AddrPort, bool, error)
	WriteToUDPAddrPort(b []byte, addr netip.AddrPort) (int, error)
}

// plainUDP is a *net.UDPConn as a udpConn: whether a read waited is not
// known, so its reader always hands off.
type plainUDP struct{ *net.UDPConn }

func (p plainUDP) ReadWaited(b []byte) (int, netip.AddrPort, bool, error) {
	n, from, err := p.ReadFromUDPAddrPort(b)
	return n, from, false, err
}

// tlsHandshakeTimeout bounds the TLS handshake of a tls: input connection.
const tlsHandshakeTimeout = 10 * time.Second

// tlsConfig loads the certificate of the tls: inputs.
func (in *Ingest) tlsConfig() (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(in.cfg.TLSCert, in.cfg.TLSKey)
	if err != nil {
		return nil, fmt.Errorf("ingest: tls_cert %s: %w", in.cfg.TLSCert, err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// serveTCP accepts connections until the listener is closed.
func (in *Ingest) serveTCP(input string, ln net.Listener) {
	defer in.readers.Done()
	sem := make(chan struct{}, maxTCPConns)
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || in.stopped.Load() {
				return
			}
			if in.logLim.Allow("accept/"+input, in.now()) {
				in.log.Warn("ingest: accept error", "input", input, "err", err)
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		src := addrPortOf(c.RemoteAddr())
		if !in.allowed(input, src.Addr()) {
			c.Close()
			continue
		}
		select {
		case sem <- struct{}{}:
		default:
			in.bad(input, reasonTooManyConn, src, fmt.Errorf("more than %d connections", maxTCPConns))
			c.Close()
			continue
		}
		if !in.track(c) {
			<-sem
			continue
		}
		in.readers.Add(1)
		go func() {
			defer func() {
				in.untrack(c)
				<-sem
				in.readers.Done()
			}()
			if tc, ok := c.(*tls.Conn); ok {
				// A peer that stalls the handshake is cut off.
				ctx, cancel := context.WithTimeout(context.Background(), tlsHandshakeTimeout)
				err := tc.HandshakeContext(ctx)
				cancel()
				if err != nil {
					in.bad(input, reasonTLSHandshake, src, err)
					return
				}
			}
			if input == InputHEP {
				in.serveHEPStream(c, src)
			} else {
				in.serveSIPStream(input, c, src)
			}
		}()
	}
}

// track registers a connection so Stop can close it; false if stopping.
func (in *Ingest) track(c net.Conn) bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.stopped.Load() {
		c.Close()
		return false
	}
	in.conns[c] = struct{}{}
	return true
}

func (in *Ingest) untrack(c net.Conn) {
	in.mu.Lock()
	delete(in.conns, c)
	in.mu.Unlock()
	c.Close()
}

func addrPortOf(a net.Addr) netip.AddrPort {
	var ap netip.AddrPort
	switch v := a.(type) {
	case *net.TCPAddr:
		ap = v.AddrPort()
	case *net.UDPAddr:
		ap = v.AddrPort()
	default:
		ap, _ = netip.ParseAddrPort(a.String())
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// serveSIPStream frames SIP messages on a TCP connection by Content-Length
// and answers replicated requests on the same connection.
func (in *Ingest) serveSIPStream(input string, c net.Conn, src netip.AddrPort) {
	r := bufio.NewReaderSize(c, 4096)
	var frame []byte
	reply := func(res []byte) {
		if _, err := c.Write(res); err != nil && in.logLim.Allow("write/"+input, in.now()) {
			in.log.Warn("ingest: cannot answer replicated request", "input", input, "dst", src.String(), "err", err)
		}
	}
	for {
		var err error
		frame, err = readSIPFrame(r, in.cfg.MaxMessageSize, frame[:0])
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				reason := reasonFraming
				if errors.Is(err, errFrameTooLarge) {
					reason = reasonOversize
				}
				in.bad(input, reason, src, err)
			}
			return
		}
		in.handleSIP(input, src, frame, reply, false)
	}
}

// readSIPFrame reads one SIP message from a stream into frame: leading
// CRLFs (keep-alives) are skipped, the headers are read up to the empty
// line, and then exactly Content-Length body bytes. Nothing beyond max
// bytes is ever buffered. io.EOF means the peer closed between messages.
func readSIPFrame(r *bufio.Reader, max int, frame []byte) ([]byte, error) {
	for {
		c, err := r.ReadByte()
		if err != nil {
			return nil, err
		}
		if c != '\r' && c != '\n' {
			_ = r.UnreadByte()
			break
		}
	}
	clen, lineStart := -1, len(frame)
	for {
		chunk, err := r.ReadSlice('\n')
		frame = append(frame, chunk...)
		if len(frame) > max {
			return nil, errFrameTooLarge
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil, io.ErrUnexpectedEOF
			}
			return nil, err
		}
		line := bytes.TrimRight(frame[lineStart:], "\r\n")
		lineStart = len(frame)
		if len(line) == 0 {
			break
		}
		name, val, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		name = bytes.TrimSpace(name)
		if bytes.EqualFold(name, []byte("Content-Length")) || bytes.EqualFold(name, []byte("l")) {
			v, err := strconv.Atoi(string(bytes.TrimSpace(val)))
			if err != nil || v < 0 {
				return nil, fmt.Errorf("%w: %q", errBadContentLength, val)
			}
			clen = v
		}
	}
	if clen < 0 {
		return nil, errNoContentLength
	}
	if clen > max-len(frame) {
		return nil, errFrameTooLarge
	}
	n := len(frame)
	frame = append(frame, make([]byte, clen)...)
	if _, err := io.ReadFull(r, frame[n:]); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return frame, nil
}

// serveHEPStream frames HEPv3 packets on a TCP connection by their
// total-length field.
func (in *Ingest) serveHEPStream(c net.Conn, src netip.AddrPort) {
	r := bufio.NewReaderSize(c, 4096)
	var frame []byte
	for {
		var err error
		frame, err = readHEPFrame(r, in.cfg.MaxMessageSize, frame[:0])
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				reason := reasonFraming
				if errors.Is(err, errFrameTooLarge) {
					reason = reasonOversize
				}
				in.bad(InputHEP, reason, src, err)
			}
			return
		}
		in.handleHEP(src, frame, false)
	}
}

// readHEPFrame reads one HEPv3 packet from a stream into frame.
func readHEPFrame(r *bufio.Reader, max int, frame []byte) ([]byte, error) {
	var hdr [hepHeaderLen]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err // io.EOF: closed between packets; io.ErrUnexpectedEOF: inside one
	}
	if string(hdr[:4]) != "HEP3" {
		return nil, ErrNotHEP3
	}
	total := int(binary.BigEndian.Uint16(hdr[4:]))
	if total < hepHeaderLen {
		return nil, fmt.Errorf("%w: total length %d", ErrTotalLength, total)
	}
	if total > max {
		return nil, errFrameTooLarge
	}
	frame = append(frame, hdr[:]...)
	frame = append(frame, make([]byte, total-hepHeaderLen)...)
	if _, err := io.ReadFull(r, frame[hepHeaderLen:]); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return frame, nil
}
