package dialogdoc

import (
	"bytes"
	"strconv"

	"github.com/puaside/puaside/internal/xmltext"
)

// Build renders a full-state document (State is ignored). All attribute values and texts are escaped with
// encoding/xml, so any input yields well-formed XML.
func Build(d Document) []byte {
	var b bytes.Buffer
	b.Grow(sizeHint(&d))
	b.WriteString(`<?xml version="1.0"?>` + "\n")
	b.WriteString(`<dialog-info xmlns="` + Namespace + `" version="`)
	b.WriteString(strconv.FormatUint(d.Version, 10))
	b.WriteString(`" state="full" entity="`)
	xmltext.Escape(&b, d.Entity)
	b.WriteString(`">` + "\n")
	for i := range d.Dialogs {
		writeDialog(&b, &d.Dialogs[i])
	}
	b.WriteString("</dialog-info>\n")
	return b.Bytes()
}

func writeDialog(b *bytes.Buffer, dl *Dialog) {
	b.WriteString(`  <dialog id="`)
	xmltext.Escape(b, dl.ID)
	b.WriteByte('"')
	attr(b, "call-id", dl.CallID)
	attr(b, "local-tag", dl.LocalTag)
	attr(b, "remote-tag", dl.RemoteTag)
	attr(b, "direction", dl.Direction)
	b.WriteString(">\n    <state")
	attr(b, "event", dl.Event)
	if dl.Code > 0 {
		attr(b, "code", strconv.Itoa(dl.Code))
	}
	b.WriteByte('>')
	xmltext.Escape(b, dl.State)
	b.WriteString("</state>\n")
	writeParticipant(b, "local", dl.Local)
	writeParticipant(b, "remote", dl.Remote)
	b.WriteString("  </dialog>\n")
}

func writeParticipant(b *bytes.Buffer, name string, p *Participant) {
	if p == nil {
		return
	}
	b.WriteString("    <")
	b.WriteString(name)
	b.WriteString(">\n      <identity")
	attr(b, "display", p.Display)
	b.WriteByte('>')
	xmltext.Escape(b, p.Identity)
	b.WriteString("</identity>\n      <target uri=\"")
	xmltext.Escape(b, p.Target)
	if p.Rendering == "" {
		b.WriteString("\"/>\n")
	} else {
		b.WriteString("\">\n        <param pname=\"+sip.rendering\" pval=\"")
		xmltext.Escape(b, p.Rendering)
		b.WriteString("\"/>\n      </target>\n")
	}
	b.WriteString("    </")
	b.WriteString(name)
	b.WriteString(">\n")
}

func attr(b *bytes.Buffer, name, v string) {
	if v == "" {
		return
	}
	b.WriteByte(' ')
	b.WriteString(name)
	b.WriteString(`="`)
	xmltext.Escape(b, v)
	b.WriteByte('"')
}

// sizeHint is about the size of d's document, so that Build allocates once.
func sizeHint(d *Document) int {
	n := 160 + len(d.Entity)
	for i := range d.Dialogs {
		dl := &d.Dialogs[i]
		n += 160 + len(dl.ID) + len(dl.CallID) + len(dl.LocalTag) + len(dl.RemoteTag) + len(dl.Event)
		for _, p := range [2]*Participant{dl.Local, dl.Remote} {
			if p != nil {
				n += 180 + len(p.Identity) + len(p.Display) + len(p.Target)
			}
		}
	}
	// Escaping may add a few bytes more; the buffer then grows once.
	return n + n/8
}
