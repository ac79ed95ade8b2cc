// Package crashtest holds the pieces shared by the crash-recovery fuzz
// targets (pua's FuzzCrashRecovery and chainfuzz's FuzzChainRecovery): a
// stateful in-process presence server that can be stopped and can turn deaf
// to a killed engine, a pua.Store that refuses every write once the process
// is dead, and a clock wrapper whose timers stop firing at the kill.
package crashtest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/puaside/puaside/clock"
	"github.com/puaside/puaside/pua"
)

// KillableStore refuses every write once Dead is set (the process is gone).
type KillableStore struct {
	pua.Store
	Dead atomic.Bool
}

// SaveRecords writes through until the process is dead.
func (k *KillableStore) SaveRecords(ctx context.Context, up, rm []pua.Record) error {
	if k.Dead.Load() {
		return fmt.Errorf("killed")
	}
	return k.Store.SaveRecords(ctx, up, rm)
}

// ProcClock is the clock of one process: it reads and arms timers on a
// shared clock, and once Kill is called the timers it armed never run (a
// killed process runs nothing).
type ProcClock struct {
	clock.Clock
	dead atomic.Bool
}

// NewProcClock returns a live process clock on c.
func NewProcClock(c clock.Clock) *ProcClock { return &ProcClock{Clock: c} }

// Kill stops every timer armed through p, now and later.
func (p *ProcClock) Kill() { p.dead.Store(true) }

// AfterFunc arms f on the shared clock unless the process is dead.
func (p *ProcClock) AfterFunc(d time.Duration, f func()) clock.Timer {
	return p.Clock.AfterFunc(d, func() {
		if !p.dead.Load() {
			f()
		}
	})
}

// At arms f on the shared clock for t unless the process is dead.
func (p *ProcClock) At(t time.Time, f func()) clock.Timer {
	return p.Clock.At(t, func() {
		if !p.dead.Load() {
			f()
		}
	})
}

// Now is the shared clock's time.
type Now interface{ Now() time.Time }

// Server is an in-process RFC 3903 state agent: it keeps each publication
// under its current ETag until it expires (on the test clock, with a grace
// of a few seconds as a real server's timer has) or is removed, answers 412
// for an unknown ETag, and gives a new ETag on every successful PUBLISH.
type Server struct {
	clk   Now
	port  int
	mu    sync.Mutex
	pubs  map[string]*publication // by ETag
	etagN int
	n     int
	deaf  map[string]bool // Via sent-by of dead engines
	down  bool            // answer nothing (an outage)
}

type publication struct {
	uri, event, doc string
	expires         time.Time
}

// ServerGrace is how long after its expiry a publication is still held.
const ServerGrace = 10 * time.Second

// NewServer starts a server on a free UDP port of 127.0.0.1; it stops when
// the test ends.
func NewServer(t testing.TB, clk Now) *Server {
	ps := &Server{clk: clk, pubs: map[string]*publication{}, deaf: map[string]bool{}}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ua, err := sipgo.NewUA(sipgo.WithUserAgentTransportLayerOptions(sip.WithTransportLayerLogger(log)),
		sipgo.WithUserAgentTransactionLayerOptions(sip.WithTransactionLayerLogger(log)))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := sipgo.NewServer(ua, sipgo.WithServerLogger(log))
	if err != nil {
		t.Fatal(err)
	}
	srv.OnPublish(ps.handle)
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ps.port = pc.LocalAddr().(*net.UDPAddr).Port
	go srv.ServeUDP(pc)
	t.Cleanup(func() {
		ua.Close()
		pc.Close()
	})
	return ps
}

// SetDown starts (true) or ends (false) an outage: requests get no answer.
func (ps *Server) SetDown(b bool) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	ps.down = b
}

// IsDown reports whether an outage is on.
func (ps *Server) IsDown() bool {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return ps.down
}

// URI is the server's SIP URI.
func (ps *Server) URI() string { return fmt.Sprintf("sip:127.0.0.1:%d", ps.port) }

// Requests counts the requests heard so far (answered or not).
func (ps *Server) Requests() int {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return ps.n
}

// DeafTo drops every later request of the engine with this Contact.
func (ps *Server) DeafTo(contact string) {
	var u sip.Uri
	if err := sip.ParseUri(contact, &u); err != nil {
		return
	}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	ps.deaf[net.JoinHostPort(u.Host, strconv.Itoa(u.Port))] = true
}

// Live returns the documents of the live publications by presentity.
func (ps *Server) Live() map[string][]string { return ps.LiveEvent("") }

// LiveEvent returns the documents of the live publications of one event
// package by presentity; "" is every event package.
func (ps *Server) LiveEvent(event string) map[string][]string {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	ps.purge()
	out := map[string][]string{}
	for _, p := range ps.pubs {
		if event == "" || p.event == event {
			out[p.uri] = append(out[p.uri], p.doc)
		}
	}
	return out
}

// purge forgets expired publications. ps.mu held.
func (ps *Server) purge() {
	now := ps.clk.Now()
	for etag, p := range ps.pubs {
		if now.After(p.expires.Add(ServerGrace)) {
			delete(ps.pubs, etag)
		}
	}
}

func (ps *Server) handle(req *sip.Request, tx sip.ServerTransaction) {
	via := req.Via()
	ps.mu.Lock()
	if via != nil && ps.deaf[net.JoinHostPort(via.Host, strconv.Itoa(via.Port))] {
		ps.mu.Unlock()
		return
	}
	ps.n++
	if ps.down {
		ps.mu.Unlock()
		return
	}
	ps.purge()
	exp := 3600
	if h := req.GetHeader("Expires"); h != nil {
		exp, _ = strconv.Atoi(h.Value())
	}
	var ifMatch, event string
	if h := req.GetHeader("SIP-If-Match"); h != nil {
		ifMatch = h.Value()
	}
	if h := req.GetHeader("Event"); h != nil {
		event = h.Value()
	}
	code, etag := 200, ""
	switch p := ps.pubs[ifMatch]; {
	case ifMatch != "" && p == nil:
		code = 412
	case exp == 0:
		delete(ps.pubs, ifMatch)
	default:
		if p == nil {
			p = &publication{uri: req.Recipient.String(), event: event}
		} else {
			delete(ps.pubs, ifMatch)
		}
		if body := req.Body(); len(body) > 0 {
			p.doc = string(body)
		}
		p.expires = ps.clk.Now().Add(time.Duration(exp) * time.Second)
		ps.etagN++
		etag = "e" + strconv.Itoa(ps.etagN)
		ps.pubs[etag] = p
	}
	ps.mu.Unlock()
	res := sip.NewResponseFromRequest(req, code, "Reply", nil)
	if code == 200 {
		if etag != "" {
			res.AppendHeader(sip.NewHeader("SIP-ETag", etag))
		}
		e := sip.ExpiresHeader(exp)
		res.AppendHeader(&e)
	}
	_ = tx.Respond(res)
}
