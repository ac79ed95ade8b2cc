package board

import (
	"strings"

	"github.com/emiago/sipgo/sip"

	"github.com/puaside/puaside/aor"
	"github.com/puaside/puaside/event"
)

// maxText bounds one history line built from a SIP message.
const maxText = 200

// SIP records a REGISTER or call message ingest delivered in the history
// of the AoRs it names (To for a REGISTER; From and To for a call). A
// message without a usable From or To is ignored.
func (b *Board) SIP(m event.SIP) {
	if m.Msg == nil {
		return
	}
	cs := m.Msg.CSeq()
	if cs == nil {
		return
	}
	to := m.Msg.To()
	if to == nil {
		return
	}
	toAoR, err := aor.FromURI(&to.Address)
	if err != nil {
		return
	}
	kind := EventCall
	if cs.MethodName == sip.REGISTER {
		kind = EventRegister
	}
	var fromAoR string // a call's other party; a REGISTER's From is not shown
	if f := m.Msg.From(); f != nil && kind == EventCall {
		fromAoR, _ = aor.FromURI(&f.Address)
	}
	ev := histEvent{kind: kind}
	switch msg := m.Msg.(type) {
	case *sip.Request:
		// The parts, joined in one concatenation (one allocation).
		var p [7]string
		if kind == EventRegister {
			exp, ua := registerHeaders(msg)
			if exp != nil {
				p[0], p[1] = " Expires ", exp.Value()
			}
			if ua != nil {
				p[2], p[3], p[4] = " (", ua.Value(), ")"
			}
		} else if fromAoR != "" {
			p[0], p[1], p[2], p[3] = " ", fromAoR, " → ", toAoR
		}
		if kind == EventCall {
			if cid := m.Msg.CallID(); cid != nil {
				p[5], p[6] = " Call-ID ", cid.Value()
			}
		}
		ev.text = clip(string(msg.Method) + p[0] + p[1] + p[2] + p[3] + p[4] + p[5] + p[6])
	case *sip.Response:
		// Built when shown (histEvent.event): a response is the most
		// frequent message and its line is rarely read.
		ev.form, ev.n, ev.text, ev.op = histResponse, msg.StatusCode, msg.Reason, string(cs.MethodName)
		if kind == EventCall {
			if cid := m.Msg.CallID(); cid != nil {
				ev.form, ev.ev = histResponseCall, cid.Value()
			}
		}
		if len(ev.text)+len(ev.ev) > maxText { // a long line is kept clipped, not in parts
			ev = histEvent{kind: kind, text: ev.event().Text}
		}
	default:
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	ev.aor = toAoR
	b.noteEvent(ev)
	if kind == EventCall && fromAoR != "" && fromAoR != toAoR {
		ev.aor = fromAoR
		b.noteEvent(ev)
	}
}

// registerHeaders returns the first Expires and User-Agent headers of a
// REGISTER (nil when absent), in one pass over its headers that, unlike
// GetHeader, allocates no lower-cased copy of each header's name.
func registerHeaders(req *sip.Request) (exp, ua sip.Header) {
	for _, h := range req.Headers() {
		switch n := h.Name(); {
		case exp == nil && asciiFold(n, "expires"):
			exp = h
		case ua == nil && asciiFold(n, "user-agent"):
			ua = h
		}
	}
	return exp, ua
}

// asciiFold reports whether s is lower, ASCII letters compared without
// case (as sip.HeaderToLower compares header names).
func asciiFold(s, lower string) bool {
	if len(s) != len(lower) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// clip shortens s to maxText bytes on a rune boundary.
func clip(s string) string {
	s = strings.ToValidUTF8(s, "?")
	if len(s) <= maxText {
		return s
	}
	cut := maxText
	for cut > 0 && !isRuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

func isRuneStart(c byte) bool { return c&0xC0 != 0x80 }
