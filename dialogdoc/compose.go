package dialogdoc

import (
	"bytes"
	"regexp"
	"sort"
	"strconv"

	"github.com/puaside/puaside/internal/xmltext"
)

// idAttr matches the id attribute of a <dialog> start tag (not call-id).
var idAttr = regexp.MustCompile(`^([^>]*?\s)id\s*=\s*("[^"]*"|'[^']*')`)

// WithID returns the dialog with id as its ID, its element as written (Raw)
// carrying the new id attribute. A dialog without Raw gets the ID only.
func (d Dialog) WithID(id string) Dialog {
	if d.ID == id {
		return d
	}
	d.ID = id
	if len(d.Raw) == 0 {
		return d
	}
	var v bytes.Buffer
	v.WriteByte('"')
	xmltext.Escape(&v, id) // quotes included
	v.WriteByte('"')
	if loc := idAttr.FindSubmatchIndex(d.Raw); loc != nil {
		raw := make([]byte, 0, len(d.Raw)+len(id))
		raw = append(raw, d.Raw[:loc[4]]...)
		raw = append(raw, v.Bytes()...)
		raw = append(raw, d.Raw[loc[5]:]...)
		d.Raw = raw
	}
	return d
}

// Part is one contributor's share of a composed document: its dialogs as
// it wrote them and the namespace declarations of its document's root
// (prefix → URI; "" is the default namespace), which its dialogs' elements
// may rely on.
type Part struct {
	Dialogs    []Dialog
	Namespaces map[string]string
}

// Compose renders the full-state document (RFC 4235 §4.1) of entity with
// the given version holding every part's dialogs as written, in order. The
// root declares the dialog-info namespace as the default and every prefix
// the parts declare; a prefix declared with two different URIs keeps the
// first part's (conflicts reports how many were dropped). Parts whose
// default namespace is not dialog-info's are composed all the same: their
// dialogs are read as dialog-info dialogs by Parse, so they are here.
func Compose(entity string, version uint64, parts []Part) (body []byte, conflicts int) {
	prefixes := map[string]string{}
	for _, p := range parts {
		for _, pfx := range sortedNS(p.Namespaces) {
			if pfx == "" || pfx == "xml" {
				continue
			}
			uri := p.Namespaces[pfx]
			if old, ok := prefixes[pfx]; ok {
				if old != uri {
					conflicts++
				}
				continue
			}
			prefixes[pfx] = uri
		}
	}
	var b bytes.Buffer
	b.Grow(256 + 256*len(parts))
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	b.WriteString(`<dialog-info xmlns="` + Namespace + `"`)
	for _, pfx := range sortedNS(prefixes) {
		b.WriteString(" xmlns:" + pfx + `="`)
		xmltext.Escape(&b, prefixes[pfx])
		b.WriteByte('"')
	}
	b.WriteString(` version="` + strconv.FormatUint(version, 10) + `" state="full" entity="`)
	xmltext.Escape(&b, entity)
	b.WriteString(`">` + "\n")
	for _, p := range parts {
		for i := range p.Dialogs {
			d := &p.Dialogs[i]
			if len(d.Raw) == 0 {
				writeDialog(&b, d)
				continue
			}
			b.Write(d.Raw)
			b.WriteByte('\n')
		}
	}
	b.WriteString("</dialog-info>\n")
	return b.Bytes(), conflicts
}

func sortedNS(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
