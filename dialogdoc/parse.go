package dialogdoc

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/puaside/puaside/internal/xmllimit"
)

// Parse errors. Parse wraps them with detail.
var (
	// ErrEmptyBody is returned for an empty document.
	ErrEmptyBody = errors.New("empty dialog-info body")
	// ErrTooLarge is returned for a document over the size cap.
	ErrTooLarge = errors.New("dialog-info body too large")
	// ErrDoctype is returned for a document with a DOCTYPE or another
	// markup declaration (entity definitions are never expanded).
	ErrDoctype = errors.New("dialog-info body has a DOCTYPE")
	// ErrMalformed is returned for a document that is not well-formed XML or
	// not a dialog-info document.
	ErrMalformed = errors.New("malformed dialog-info body")
)

// Parse parses a dialog-info document of at most maxSize bytes (0:
// DefaultMaxSize).
// It rejects DOCTYPEs and other declarations outright, so no entity is ever
// defined or expanded, and requires the root element dialog-info and an id
// and a state for each dialog. Errors wrap ErrEmptyBody, ErrTooLarge,
// ErrDoctype or ErrMalformed.
func Parse(body []byte, maxSize int) (*Document, error) {
	if err := xmllimit.CheckSize(body, maxSize, ErrEmptyBody, ErrTooLarge); err != nil {
		return nil, err
	}
	dec := xmllimit.NewDecoder(body, true)
	var (
		info     Document
		stack    []string
		cur      *Dialog
		text     strings.Builder
		inText   bool
		sawRoot  bool
		rootDone bool
		dlgStart int64
	)
	for {
		off := dec.InputOffset()
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		switch t := tok.(type) {
		case xml.Directive:
			return nil, ErrDoctype
		case xml.StartElement:
			if rootDone {
				return nil, fmt.Errorf("%w: content after the root element", ErrMalformed)
			}
			if len(stack) >= MaxDepth {
				return nil, fmt.Errorf("%w: nesting deeper than %d", ErrMalformed, MaxDepth)
			}
			name := t.Name.Local
			stack = append(stack, name)
			switch {
			case len(stack) == 1:
				if name != "dialog-info" {
					return nil, fmt.Errorf("%w: root element is <%s>, want <dialog-info>", ErrMalformed, name)
				}
				sawRoot = true
				if err := info.setAttrs(t.Attr); err != nil {
					return nil, err
				}
				info.root = body[off:dec.InputOffset()]
				info.rootName = rawName(info.root)
			case len(stack) == 2 && name == "dialog":
				dlgStart = off
				info.Dialogs = append(info.Dialogs, Dialog{})
				cur = &info.Dialogs[len(info.Dialogs)-1]
				for _, a := range t.Attr {
					switch a.Name.Local {
					case "id":
						cur.ID = a.Value
					case "call-id":
						cur.CallID = a.Value
					case "local-tag":
						cur.LocalTag = a.Value
					case "remote-tag":
						cur.RemoteTag = a.Value
					case "direction":
						cur.Direction = a.Value
					}
				}
				if cur.ID == "" {
					return nil, fmt.Errorf("%w: <dialog> without id", ErrMalformed)
				}
			case cur != nil && len(stack) == 3 && (name == "state" || name == "appearance"):
				text.Reset()
				inText = true
			case cur != nil && len(stack) == 4 && name == "identity" && stack[2] == "remote":
				cur.Remote = &Participant{}
				for _, a := range t.Attr {
					if a.Name.Local == "display" {
						cur.Remote.Display = strings.TrimSpace(a.Value)
					}
				}
				text.Reset()
				inText = true
			case cur != nil && len(stack) == 5 && name == "param" && stack[2] == "local" && stack[3] == "target":
				var pname, pval string
				for _, a := range t.Attr {
					switch a.Name.Local {
					case "pname":
						pname = a.Value
					case "pval", "pvalue":
						pval = a.Value
					}
				}
				switch strings.ToLower(strings.TrimSpace(pname)) {
				case "x-line-id":
					cur.LineID = strings.TrimSpace(pval)
				case "+sip.rendering":
					cur.Held = strings.EqualFold(strings.TrimSpace(pval), "no")
				}
			}
		case xml.CharData:
			if inText {
				text.Write(t)
			} else if len(stack) == 0 && len(bytes.TrimSpace(t)) != 0 {
				return nil, fmt.Errorf("%w: text outside the root element", ErrMalformed)
			}
		case xml.EndElement:
			if len(stack) == 0 {
				return nil, fmt.Errorf("%w: unbalanced end element", ErrMalformed)
			}
			if inText && len(stack) == 3 {
				v := strings.TrimSpace(text.String())
				if stack[2] == "state" {
					cur.State = strings.ToLower(v)
				} else if cur.LineID == "" {
					cur.LineID = v
				}
				inText = false
			}
			if inText && len(stack) == 4 && cur.Remote != nil {
				cur.Remote.Identity = strings.TrimSpace(text.String())
				inText = false
			}
			if len(stack) == 2 && stack[1] == "dialog" && cur != nil {
				if cur.State == "" {
					return nil, fmt.Errorf("%w: dialog %q without <state>", ErrMalformed, cur.ID)
				}
				cur.Raw = body[dlgStart:dec.InputOffset()]
				cur = nil
			}
			stack = stack[:len(stack)-1]
			if len(stack) == 0 {
				rootDone = true
			}
		}
	}
	if !sawRoot || !rootDone {
		return nil, fmt.Errorf("%w: no complete <dialog-info> element", ErrMalformed)
	}
	return &info, nil
}

func (info *Document) setAttrs(attrs []xml.Attr) error {
	info.State = DocFull
	for _, a := range attrs {
		switch {
		case a.Name.Space == "xmlns":
			info.addNamespace(a.Name.Local, a.Value)
			continue
		case a.Name.Space == "" && a.Name.Local == "xmlns":
			info.addNamespace("", a.Value)
			continue
		}
		switch a.Name.Local {
		case "version":
			v, err := strconv.ParseUint(strings.TrimSpace(a.Value), 10, 64)
			if err != nil {
				return fmt.Errorf("%w: version %q", ErrMalformed, a.Value)
			}
			info.Version, info.HasVersion = v, true
		case "state":
			switch s := strings.ToLower(strings.TrimSpace(a.Value)); s {
			case DocFull, DocPartial:
				info.State = s
			default:
				return fmt.Errorf("%w: document state %q", ErrMalformed, a.Value)
			}
		case "entity":
			info.Entity = a.Value
		}
	}
	return nil
}

func (info *Document) addNamespace(prefix, uri string) {
	if info.namespaces == nil {
		info.namespaces = map[string]string{}
	}
	info.namespaces[prefix] = uri
}
