package main

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"
)

// fakePresence is a stateless presence server: every PUBLISH gets a 200
// with a SIP-ETag and the Expires asked for.
type fakePresence struct {
	conn      *net.UDPConn
	parser    *sip.Parser
	arrival   []atomic.Int64 // first PUBLISH per user index, Unix ns
	published atomic.Int64   // users with a PUBLISH
	total     atomic.Int64   // all PUBLISH requests
	etag      atomic.Uint64
	wg        sync.WaitGroup
}

// startFakePresence listens on a free 127.0.0.1 port for up to users AoRs.
// Two readers share the socket so that parsing keeps up.
func startFakePresence(users int) (*fakePresence, error) {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, fmt.Errorf("fake presence server: %w", err)
	}
	_ = c.SetReadBuffer(8 << 20)
	f := &fakePresence{conn: c, parser: sip.NewParser(), arrival: make([]atomic.Int64, users)}
	for range 2 {
		f.wg.Add(1)
		go f.serve()
	}
	return f, nil
}

func (f *fakePresence) addr() string { return f.conn.LocalAddr().String() }

func (f *fakePresence) close() {
	f.conn.Close()
	f.wg.Wait()
}

// serve answers PUBLISH requests until the socket is closed.
func (f *fakePresence) serve() {
	defer f.wg.Done()
	buf := make([]byte, 65536)
	var sb strings.Builder
	for {
		n, from, err := f.conn.ReadFromUDPAddrPort(buf)
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			time.Sleep(time.Millisecond) // a persistent error must not spin
			continue
		}
		now := time.Now().UnixNano()
		msg, err := f.parser.ParseSIP(buf[:n])
		if err != nil {
			continue
		}
		req, ok := msg.(*sip.Request)
		if !ok || req.Method == sip.ACK {
			continue
		}
		code, reason := 200, "OK"
		if req.Method != sip.PUBLISH {
			code, reason = 405, "Method Not Allowed"
		} else {
			f.total.Add(1)
			f.record(req.Recipient.User, now)
		}
		res := sip.NewResponseFromRequest(req, code, reason, nil)
		if code == 200 {
			exp := "3600"
			if h := req.GetHeader("Expires"); h != nil {
				exp = h.Value()
			}
			res.AppendHeader(sip.NewHeader("SIP-ETag", "e"+strconv.FormatUint(f.etag.Add(1), 36)))
			res.AppendHeader(sip.NewHeader("Expires", exp))
		}
		sb.Reset()
		res.StringWrite(&sb)
		_, _ = f.conn.WriteToUDPAddrPort([]byte(sb.String()), from)
	}
}

// record notes the first PUBLISH of user "u<index>".
func (f *fakePresence) record(user string, now int64) {
	i, err := strconv.Atoi(strings.TrimPrefix(user, "u"))
	if err != nil || i < 0 || i >= len(f.arrival) {
		return
	}
	if f.arrival[i].CompareAndSwap(0, now) {
		f.published.Add(1)
	}
}
