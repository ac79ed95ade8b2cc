package usrloc

import (
	"hash/fnv"
	"sort"
	"strconv"
	"strings"

	"github.com/puaside/puaside/pidf"
)

// ContentTypePIDF is the content type of the published documents.
const ContentTypePIDF = pidf.ContentType

// Entity returns the PIDF entity of an AoR ("sip:user@domain"): the AoR
// itself, or "<prefix>:user@domain" when prefix is set (pua_usrloc's
// entity_prefix).
func Entity(aor, prefix string) string {
	if prefix == "" {
		return aor
	}
	return prefix + ":" + strings.TrimPrefix(aor, "sip:")
}

// TupleID returns the stable tuple id of a contact URI: "t" and 16 hex
// digits of its FNV-1a hash, a valid xs:ID.
func TupleID(s string) string {
	h := fnv.New64a()
	h.Write([]byte(s))
	return "t" + strconv.FormatUint(h.Sum64()|1<<63, 16)
}

// BuildPIDF returns the PIDF document of an AoR with its bound contacts
// ("open", one tuple per contact, ordered by q descending then URI) or,
// when contacts is empty, the "closed" document (one tuple). The output is
// deterministic: the same binding set always gives the same bytes.
func BuildPIDF(entity string, contacts []Binding) []byte {
	if len(contacts) == 0 {
		return pidf.Build(pidf.Document{Entity: entity, Tuples: []pidf.Tuple{{ID: TupleID(entity), Basic: pidf.Closed, Priority: -1}}})
	}
	cs := append([]Binding(nil), contacts...)
	sort.Slice(cs, func(i, j int) bool {
		if qi, qj := effQ(cs[i].Q), effQ(cs[j].Q); qi != qj {
			return qi > qj
		}
		return cs[i].URI < cs[j].URI
	})
	d := pidf.Document{Entity: entity, Tuples: make([]pidf.Tuple, 0, len(cs))}
	for _, c := range cs {
		d.Tuples = append(d.Tuples, pidf.Tuple{ID: TupleID(c.URI), Basic: pidf.Open, Contact: c.URI, Priority: c.Q})
	}
	return pidf.Build(d)
}

// effQ orders an unstated q (-1) as 1.0, the RFC 3261 default preference.
func effQ(q float64) float64 {
	if q < 0 {
		return 1
	}
	return q
}
