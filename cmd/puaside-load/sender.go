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

	"github.com/puaside/puaside/ingest"
)

// sender plays the proxy's t_replicate(): one REGISTER copy per AoR.
type sender struct {
	hep      bool // play siptrace HEPv3 REGISTER + 200 instead
	conn     *net.UDPConn
	local    netip.AddrPort
	sentAt   []int64
	answered atomic.Int64
	wg       sync.WaitGroup
}

func newSender(target *net.UDPAddr, users int, hep bool) (*sender, error) {
	c, err := net.DialUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, target)
	if err != nil {
		return nil, fmt.Errorf("sender: %w", err)
	}
	_ = c.SetWriteBuffer(8 << 20)
	_ = c.SetReadBuffer(8 << 20)
	s := &sender{hep: hep, conn: c, local: c.LocalAddr().(*net.UDPAddr).AddrPort(), sentAt: make([]int64, users)}
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
			if s.hep {
				buf = s.hepRegister(buf, n)
				_, _ = s.conn.Write(buf)
				buf = s.hepReply(buf, n)
			} else {
				buf = s.copyOf(buf, n)
			}
			s.sentAt[n] = time.Now().UnixNano()
			_, _ = s.conn.Write(buf) // a lost copy shows as lost
		}
	}
	return n
}

// registrarAddr is the registrar's address in the HEP captures.
var registrarAddr = netip.MustParseAddrPort("10.0.0.1:5060")

// phoneAddr is user i's phone address in the HEP captures.
func phoneAddr(i int) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 1, byte(i / 250 % 250), byte(i%250 + 1)}), uint16(10000+i%50000))
}

// hepRegister is the registrar's HEPv3 capture of user i's REGISTER as
// received from the phone.
func (s *sender) hepRegister(b []byte, i int) []byte {
	ph := phoneAddr(i)
	var m []byte
	m = fmt.Appendf(m, "REGISTER sip:%s SIP/2.0\r\n", domain)
	m = fmt.Appendf(m, "Via: SIP/2.0/UDP %s;rport=%d;received=%s;branch=z9hG4bKph%d\r\n", ph, ph.Port(), ph.Addr(), i)
	m = fmt.Appendf(m, "Max-Forwards: 70\r\n")
	m = fmt.Appendf(m, "From: <sip:u%d@%s>;tag=f%d\r\n", i, domain, i)
	m = fmt.Appendf(m, "To: <sip:u%d@%s>\r\n", i, domain)
	m = fmt.Appendf(m, "Call-ID: reg-%d@load\r\n", i)
	m = fmt.Appendf(m, "CSeq: 1 REGISTER\r\n")
	m = fmt.Appendf(m, "Contact: <sip:u%d@%s>\r\n", i, ph)
	m = fmt.Appendf(m, "Expires: 3600\r\n")
	m = fmt.Appendf(m, "User-Agent: puaside-load\r\n")
	m = fmt.Appendf(m, "Content-Length: 0\r\n\r\n")
	return s.hep1(b, ph, registrarAddr, i, m)
}

// hepReply is the registrar's HEPv3 capture of its 200 to user i's
// REGISTER, listing the binding with the granted expiry.
func (s *sender) hepReply(b []byte, i int) []byte {
	ph := phoneAddr(i)
	var m []byte
	m = fmt.Appendf(m, "SIP/2.0 200 OK\r\n")
	m = fmt.Appendf(m, "Via: SIP/2.0/UDP %s;rport=%d;received=%s;branch=z9hG4bKph%d\r\n", ph, ph.Port(), ph.Addr(), i)
	m = fmt.Appendf(m, "From: <sip:u%d@%s>;tag=f%d\r\n", i, domain, i)
	m = fmt.Appendf(m, "To: <sip:u%d@%s>;tag=r%d\r\n", i, domain, i)
	m = fmt.Appendf(m, "Call-ID: reg-%d@load\r\n", i)
	m = fmt.Appendf(m, "CSeq: 1 REGISTER\r\n")
	m = fmt.Appendf(m, "Contact: <sip:u%d@%s>;expires=3600\r\n", i, ph)
	m = fmt.Appendf(m, "Server: kamailio\r\n")
	m = fmt.Appendf(m, "Content-Length: 0\r\n\r\n")
	return s.hep1(b, registrarAddr, ph, i, m)
}

// hep1 wraps one captured message in a HEPv3 packet as siptrace sends it.
func (s *sender) hep1(b []byte, src, dst netip.AddrPort, i int, payload []byte) []byte {
	b, err := ingest.AppendHEP(b[:0], &ingest.HEPPacket{IPProto: 17, Src: src, Dst: dst, Time: time.Now(),
		ProtoType: ingest.HEPProtoSIP, CaptureID: 1, CorrelationID: "reg-" + strconv.Itoa(i) + "@load", Payload: payload})
	if err != nil {
		// Not reached: the messages are a few hundred bytes. An empty
		// datagram would show as a bad packet and a lost AoR.
		return b[:0]
	}
	return b
}
