package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// sender plays the proxy's t_replicate(): one REGISTER copy per AoR.
type sender struct {
	conn     *net.UDPConn
	local    netip.AddrPort
	sentAt   []int64
	answered atomic.Int64
	wg       sync.WaitGroup
}

func newSender(target *net.UDPAddr, users int) (*sender, error) {
	c, err := net.DialUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, target)
	if err != nil {
		return nil, fmt.Errorf("sender: %w", err)
	}
	_ = c.SetWriteBuffer(8 << 20)
	_ = c.SetReadBuffer(8 << 20)
	s := &sender{conn: c, local: c.LocalAddr().(*net.UDPAddr).AddrPort(), sentAt: make([]int64, users)}
	s.wg.Add(1)
	go s.readAnswers()
	return s, nil
}

func (s *sender) close() {
	s.conn.Close()
	s.wg.Wait()
}

// readAnswers counts the 200s puaside sends back.
func (s *sender) readAnswers() {
	defer s.wg.Done()
	buf := make([]byte, 65536)
	for {
		n, err := s.conn.Read(buf)
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			time.Sleep(time.Millisecond)
			continue
		}
		if strings.HasPrefix(string(buf[:min(n, 16)]), "SIP/2.0 200") {
			s.answered.Add(1)
		}
	}
}

// copyOf is the t_replicate copy of user i's REGISTER, with the proxy's
// Via on top as Kamailio sends it.
func (s *sender) copyOf(b []byte, i int) []byte {
	u := "u" + strconv.Itoa(i)
	port := 10000 + i%50000
	b = b[:0]
	b = fmt.Appendf(b, "REGISTER sip:%s SIP/2.0\r\n", domain)
	b = fmt.Appendf(b, "Via: SIP/2.0/UDP %s;branch=z9hG4bKload%d.0\r\n", s.local, i)
	b = fmt.Appendf(b, "Via: SIP/2.0/UDP 10.1.%d.%d:%d;rport=%d;received=10.1.%d.%d;branch=z9hG4bKph%d\r\n",
		i/250%250, i%250+1, port, port, i/250%250, i%250+1, i)
	b = fmt.Appendf(b, "Max-Forwards: 69\r\n")
	b = fmt.Appendf(b, "From: <sip:%s@%s>;tag=f%d\r\n", u, domain, i)
	b = fmt.Appendf(b, "To: <sip:%s@%s>\r\n", u, domain)
	b = fmt.Appendf(b, "Call-ID: reg-%d@load\r\n", i)
	b = fmt.Appendf(b, "CSeq: 1 REGISTER\r\n")
	b = fmt.Appendf(b, "Contact: <sip:%s@10.1.%d.%d:%d>\r\n", u, i/250%250, i%250+1, port)
	b = fmt.Appendf(b, "Expires: 3600\r\n")
	b = fmt.Appendf(b, "User-Agent: puaside-load\r\n")
	b = fmt.Appendf(b, "Content-Length: 0\r\n\r\n")
	return b
}

// send sends one copy per user, paced at rate per second (0: unpaced),
// until every user is sent, duration passes or ctx ends. It returns how
// many were sent (users 0..n-1).
func (s *sender) send(ctx context.Context, rate int, duration time.Duration) int {
	start := time.Now()
	end := start.Add(duration)
	buf := make([]byte, 0, 1024)
	n := 0
	for n < len(s.sentAt) && ctx.Err() == nil {
		now := time.Now()
		if !now.Before(end) {
			break
		}
		due := len(s.sentAt)
		if rate > 0 {
			due = min(due, int(now.Sub(start).Seconds()*float64(rate))+1)
			if due <= n {
				time.Sleep(min(time.Millisecond, time.Duration(float64(n+1-due)/float64(rate)*float64(time.Second))+time.Microsecond))
				continue
			}
		}
		// At most 256 copies between two readings of the clock.
		for stop := min(due, n+256); n < stop; n++ {
			buf = s.copyOf(buf, n)
			s.sentAt[n] = time.Now().UnixNano()
			_, _ = s.conn.Write(buf) // a lost copy shows as lost
		}
	}
	return n
}
