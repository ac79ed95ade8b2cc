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
	var fromAoR string
	if f := m.Msg.From(); f != nil {
		fromAoR, _ = aor.FromURI(&f.Address)
	}
	ev := histEvent{kind: kind}
	switch msg := m.Msg.(type) {
	case *sip.Request:
		text := string(msg.Method)
		if kind == EventRegister {
			if h := msg.GetHeader("Expires"); h != nil {
				text += " Expires " + h.Value()
			}
			if h := msg.GetHeader("User-Agent"); h != nil {
				text += " (" + h.Value() + ")"
			}
		} else if fromAoR != "" {
			text += " " + fromAoR + " → " + toAoR
		}
		if cid := m.Msg.CallID(); cid != nil && kind == EventCall {
			text += " Call-ID " + cid.Value()
		}
		ev.text = clip(text)
	case *sip.Response:
		// Built when shown (histEvent.event): a response is the most
		// frequent message and its line is rarely read.
		ev.form, ev.n, ev.text, ev.op = histResponse, msg.StatusCode, msg.Reason, string(cs.MethodName)
		if cid := m.Msg.CallID(); cid != nil && kind == EventCall {
			ev.form, ev.ev = histResponseCall, cid.Value()
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
