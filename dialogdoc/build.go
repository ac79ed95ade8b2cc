package dialogdoc

import (
	"bytes"
	"encoding/xml"
	"strconv"
)

// Build renders a full-state document (State is ignored). All attribute values and texts are escaped with
// encoding/xml, so any input yields well-formed XML.
func Build(d Document) []byte {
	var b bytes.Buffer
	b.Grow(512)
	b.WriteString(`<?xml version="1.0"?>` + "\n")
	b.WriteString(`<dialog-info xmlns="` + Namespace + `" version="`)
	b.WriteString(strconv.FormatUint(d.Version, 10))
	b.WriteString(`" state="full" entity="`)
	esc(&b, d.Entity)
	b.WriteString(`">` + "\n")
	for i := range d.Dialogs {
		writeDialog(&b, &d.Dialogs[i])
	}
	b.WriteString("</dialog-info>\n")
	return b.Bytes()
}

func writeDialog(b *bytes.Buffer, dl *Dialog) {
	b.WriteString(`  <dialog id="`)
	esc(b, dl.ID)
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
	esc(b, dl.State)
	b.WriteString("</state>\n")
	writeParticipant(b, "local", dl.Local)
	writeParticipant(b, "remote", dl.Remote)
	b.WriteString("  </dialog>\n")
}

func writeParticipant(b *bytes.Buffer, name string, p *Participant) {
	if p == nil {
		return
	}
	b.WriteString("    <" + name + ">\n      <identity")
	attr(b, "display", p.Display)
	b.WriteByte('>')
	esc(b, p.Identity)
	b.WriteString("</identity>\n      <target uri=\"")
	esc(b, p.Target)
	if p.Rendering == "" {
		b.WriteString("\"/>\n")
	} else {
		b.WriteString("\">\n        <param pname=\"+sip.rendering\" pval=\"")
		esc(b, p.Rendering)
		b.WriteString("\"/>\n      </target>\n")
	}
	b.WriteString("    </" + name + ">\n")
}

func attr(b *bytes.Buffer, name, v string) {
	if v == "" {
		return
	}
	b.WriteString(" " + name + `="`)
	esc(b, v)
	b.WriteByte('"')
}

func esc(b *bytes.Buffer, s string) {
	_ = xml.EscapeText(b, []byte(s)) // writes to a bytes.Buffer never fail
}
