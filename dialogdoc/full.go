package dialogdoc

import (
	"bytes"
	"regexp"
	"sort"
)

// stateAttr matches the state attribute of a dialog-info start tag.
var stateAttr = regexp.MustCompile(`(\s)state\s*=\s*("[^"]*"|'[^']*')`)

// rawName is the element name of a start tag as written ("dialog-info",
// "di:dialog-info").
func rawName(tag []byte) string {
	t := bytes.TrimPrefix(tag, []byte("<"))
	if i := bytes.IndexAny(t, " \t\r\n/>"); i >= 0 {
		t = t[:i]
	}
	return string(t)
}

// FullDocument is the full-state document (RFC 4235 §4.1) made of the
// root element of info, with state="full", and the given dialogs as they
// were written. It is how a partial document is relayed once merged into
// the state it updates: namespace declarations and version come from info.
func (info *Document) FullDocument(dialogs []Dialog) []byte {
	root := bytes.TrimSpace(info.root)
	root = bytes.TrimSuffix(bytes.TrimSuffix(root, []byte(">")), []byte("/"))
	if stateAttr.Match(root) {
		root = stateAttr.ReplaceAll(root, []byte(`${1}state="full"`))
	} else {
		root = append(bytes.Clone(root), ` state="full"`...)
	}
	var b bytes.Buffer
	b.WriteString("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n")
	b.Write(root)
	b.WriteString(">\n")
	for _, d := range dialogs {
		b.Write(d.Raw)
		b.WriteByte('\n')
	}
	b.WriteString("</" + info.rootName + ">\n")
	return b.Bytes()
}

// Merge applies the dialogs of a partial document to the known state: a
// dialog it names replaces the known one (a terminated one is shown this
// once), the others stay. The result is sorted by dialog id.
func Merge(known map[string]Dialog, changed []Dialog) []Dialog {
	byID := make(map[string]Dialog, len(known)+len(changed))
	for id, d := range known {
		byID[id] = d
	}
	for _, d := range changed {
		byID[d.ID] = d
	}
	out := make([]Dialog, 0, len(byID))
	for _, d := range byID {
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}
