package pidf

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"sort"

	"github.com/puaside/puaside/internal/xmllimit"
	"github.com/puaside/puaside/internal/xmltext"
)

// DefaultMaxSize is the size cap of Split when none is given.
const DefaultMaxSize = xmllimit.DefaultMaxSize

// Split errors. Split wraps them with detail.
var (
	// ErrEmptyBody is returned for an empty document.
	ErrEmptyBody = errors.New("empty presence body")
	// ErrTooLarge is returned for a document over the size cap.
	ErrTooLarge = errors.New("presence body too large")
	// ErrDoctype is returned for a document with a DOCTYPE or another
	// markup declaration (entities are never defined or expanded).
	ErrDoctype = errors.New("presence body has a DOCTYPE")
	// ErrMalformed is returned for a document that is not well-formed XML
	// or not a PIDF document.
	ErrMalformed = errors.New("malformed presence body")
)

// Parts is a presence document cut into what composition needs: the
// root's namespace declarations and its child elements as written.
type Parts struct {
	// Entity is the root's entity attribute.
	Entity string
	// Namespaces are the root's declarations, prefix → URI ("" is the
	// default namespace).
	Namespaces map[string]string
	// Elements are the root's child elements (tuple, person, device,
	// note, ...) byte for byte, in document order.
	Elements [][]byte
	// Tuples is how many of them are <tuple> elements.
	Tuples int
}

// Split parses a PIDF document of at most maxSize bytes (0:
// DefaultMaxSize). The root must be a presence element in the PIDF
// namespace and every tuple must have an id (RFC 3863 §4.1.2). Errors
// wrap ErrEmptyBody, ErrTooLarge, ErrDoctype or ErrMalformed.
func Split(body []byte, maxSize int) (*Parts, error) {
	if err := xmllimit.CheckSize(body, maxSize, ErrEmptyBody, ErrTooLarge); err != nil {
		return nil, err
	}
	dec := xmllimit.NewDecoder(body, true)
	p := &Parts{Namespaces: map[string]string{}}
	depth := 0
	var start int64
	sawRoot, rootDone := false, false
	for {
		off := dec.InputOffset()
		tok, err := dec.RawToken()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
		}
		switch t := tok.(type) {
		case xml.Directive:
			return nil, ErrDoctype
		case xml.StartElement:
			if rootDone {
				return nil, fmt.Errorf("%w: content after the root element", ErrMalformed)
			}
			if depth >= xmllimit.MaxDepth {
				return nil, fmt.Errorf("%w: nesting deeper than %d", ErrMalformed, xmllimit.MaxDepth)
			}
			depth++
			switch depth {
			case 1:
				if t.Name.Local != "presence" {
					return nil, fmt.Errorf("%w: root element is %q, not presence", ErrMalformed, t.Name.Local)
				}
				sawRoot = true
				for _, a := range t.Attr {
					switch {
					case a.Name.Space == "" && a.Name.Local == "xmlns":
						p.Namespaces[""] = a.Value
					case a.Name.Space == "xmlns":
						p.Namespaces[a.Name.Local] = a.Value
					case a.Name.Space == "" && a.Name.Local == "entity":
						p.Entity = a.Value
					}
				}
				if p.Namespaces[t.Name.Space] != Namespace {
					return nil, fmt.Errorf("%w: root element is not in the PIDF namespace", ErrMalformed)
				}
			case 2:
				start = off
				if t.Name.Local == "tuple" {
					if attr(t, "id") == "" {
						return nil, fmt.Errorf("%w: tuple without id", ErrMalformed)
					}
					p.Tuples++
				}
			}
		case xml.EndElement:
			if depth == 2 {
				p.Elements = append(p.Elements, body[start:dec.InputOffset()])
			}
			depth--
			if depth == 0 {
				rootDone = true
			}
		case xml.CharData:
			if depth == 0 && len(bytes.TrimSpace(t)) > 0 {
				return nil, fmt.Errorf("%w: text outside the root element", ErrMalformed)
			}
		}
	}
	if !sawRoot || !rootDone {
		return nil, fmt.Errorf("%w: no complete presence element", ErrMalformed)
	}
	return p, nil
}

func attr(t xml.StartElement, name string) string {
	for _, a := range t.Attr {
		if a.Name.Space == "" && a.Name.Local == name {
			return a.Value
		}
	}
	return ""
}

// Compose renders one presence document of entity holding every part's
// elements as written, parts in order (RFC 3863 composition by
// concatenation, as Kamailio's presence_xml does). The root declares the
// PIDF namespace as the default and every prefix the parts declare; a
// prefix declared with two different URIs keeps the first part's
// (conflicts counts the others). With no tuple at all the document holds
// one closed tuple, so that a watcher sees the presentity offline.
func Compose(entity string, parts []*Parts) (body []byte, conflicts int) {
	prefixes := map[string]string{}
	tuples := 0
	for _, p := range parts {
		tuples += p.Tuples
		for pfx, uri := range p.Namespaces {
			if pfx == "" || pfx == "xml" {
				continue
			}
			if old, ok := prefixes[pfx]; ok {
				if old != uri {
					conflicts++
				}
				continue
			}
			prefixes[pfx] = uri
		}
	}
	if tuples == 0 {
		return Build(Document{Entity: entity, Tuples: []Tuple{{ID: "pa-offline", Basic: Closed, Priority: -1}}}), conflicts
	}
	keys := make([]string, 0, len(prefixes))
	for k := range prefixes {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b bytes.Buffer
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	b.WriteString(`<presence xmlns="` + Namespace + `"`)
	for _, k := range keys {
		b.WriteString(" xmlns:" + k + `="`)
		xmltext.Escape(&b, prefixes[k])
		b.WriteByte('"')
	}
	b.WriteString(` entity="`)
	xmltext.Escape(&b, entity)
	b.WriteString("\">\n")
	for _, p := range parts {
		for _, e := range p.Elements {
			b.WriteString("  ")
			b.Write(e)
			b.WriteByte('\n')
		}
	}
	b.WriteString("</presence>\n")
	return b.Bytes(), conflicts
}
