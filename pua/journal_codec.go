package pua

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// The journal's entries are binary (version 3): the byte 0x03, the
// operation ('p' put, 'd' del), then the Record's journal fields in the
// order of journalRec followed by Target: strings and Body as a uvarint
// length and the bytes, integers as varints, ExtraHeaders as a uvarint
// count and name/value pairs, and a last byte of flags (bit 0 Removing,
// bit 1 Modified). Nothing may follow. A version 2 entry (0x02) of an
// earlier build is the same without Target. A payload starting with '{' is
// a version 1 entry (JSON) of an earlier build, read by
// decodeJournalEntryJSON.
const (
	journalBinary   = 0x03
	journalBinaryV2 = 0x02
	journalOpPut    = 'p'
	journalOpDel    = 'd'
	flagRemoving    = 1 << 0
	flagModified    = 1 << 1
)

// errJournalShort is a binary entry that ends inside a field.
var errJournalShort = errors.New("entry ends inside a field")

// EncodeJournalEntry is the journal payload of op (JournalPut or
// JournalDel) on r.
func EncodeJournalEntry(op string, r Record) ([]byte, error) {
	var o byte
	switch op {
	case JournalPut:
		o = journalOpPut
	case JournalDel:
		o = journalOpDel
	default:
		return nil, fmt.Errorf("pua: journal entry: unknown op %q", op)
	}
	n := 2 + 1 + len(r.Body) + 16*binary.MaxVarintLen64
	for _, s := range [...]string{r.PresURI, r.PresID, r.EventName, r.ETag, r.TupleID, r.WatcherURI, r.CallID,
		r.ToTag, r.FromTag, r.RecordRoute, r.Contact, r.RemoteContact, r.ContentType, r.OutboundProxy, r.Target} {
		n += len(s) + binary.MaxVarintLen64
	}
	for _, h := range r.ExtraHeaders {
		n += len(h.Name) + len(h.Value) + 2*binary.MaxVarintLen64
	}
	b := make([]byte, 0, n)
	b = append(b, journalBinary, o)
	str := func(s string) { b = binary.AppendUvarint(b, uint64(len(s))); b = append(b, s...) }
	num := func(v int64) { b = binary.AppendVarint(b, v) }
	str(r.PresURI)
	str(r.PresID)
	str(r.EventName)
	num(r.Expires)
	num(r.DesiredExpires)
	num(int64(r.Flag))
	str(r.ETag)
	str(r.TupleID)
	str(r.WatcherURI)
	str(r.CallID)
	str(r.ToTag)
	str(r.FromTag)
	num(int64(r.CSeq))
	str(r.RecordRoute)
	str(r.Contact)
	str(r.RemoteContact)
	num(int64(r.Version))
	b = binary.AppendUvarint(b, uint64(len(r.ExtraHeaders)))
	for _, h := range r.ExtraHeaders {
		str(h.Name)
		str(h.Value)
	}
	b = binary.AppendUvarint(b, uint64(len(r.Body)))
	b = append(b, r.Body...)
	str(r.ContentType)
	str(r.OutboundProxy)
	num(r.ReqExpires)
	str(r.Target)
	var flags byte
	if r.Removing {
		flags |= flagRemoving
	}
	if r.Modified {
		flags |= flagModified
	}
	return append(b, flags), nil
}

// decodeJournalEntry reads one payload; any field, version or operation
// this build does not know is an error.
func decodeJournalEntry(p []byte) (string, Record, error) {
	if len(p) > 0 && p[0] == '{' {
		return decodeJournalEntryJSON(p)
	}
	if len(p) < 2 || p[0] != journalBinary && p[0] != journalBinaryV2 {
		return "", Record{}, errors.New("not a journal entry of a version this build reads")
	}
	var op string
	switch p[1] {
	case journalOpPut:
		op = JournalPut
	case journalOpDel:
		op = JournalDel
	default:
		return "", Record{}, fmt.Errorf("unknown op %q", p[1])
	}
	d := entryReader{b: p[2:]}
	var r Record
	r.PresURI = d.str()
	r.PresID = d.str()
	r.EventName = d.str()
	r.Expires = d.num()
	r.DesiredExpires = d.num()
	r.Flag = d.int()
	r.ETag = d.str()
	r.TupleID = d.str()
	r.WatcherURI = d.str()
	r.CallID = d.str()
	r.ToTag = d.str()
	r.FromTag = d.str()
	r.CSeq = d.int()
	r.RecordRoute = d.str()
	r.Contact = d.str()
	r.RemoteContact = d.str()
	r.Version = d.int()
	if n := d.count(); n > 0 {
		r.ExtraHeaders = make([]Header, 0, n)
		for range n {
			name := d.str()
			r.ExtraHeaders = append(r.ExtraHeaders, Header{Name: name, Value: d.str()})
		}
	}
	if body := d.bytes(); len(body) > 0 {
		r.Body = bytes.Clone(body) // not the whole generation file's buffer
	}
	r.ContentType = d.str()
	r.OutboundProxy = d.str()
	r.ReqExpires = d.num()
	if p[0] == journalBinary {
		r.Target = d.str()
	}
	flags := d.byte()
	if d.err != nil {
		return "", Record{}, d.err
	}
	if flags&^(flagRemoving|flagModified) != 0 {
		return "", Record{}, fmt.Errorf("unknown flags %#x", flags)
	}
	if len(d.b) != 0 {
		return "", Record{}, errors.New("data after the entry")
	}
	r.Removing, r.Modified = flags&flagRemoving != 0, flags&flagModified != 0
	if r.PresURI == "" {
		return "", Record{}, errors.New("no pres_uri")
	}
	return op, r, nil
}

// entryReader reads the fields of a binary entry; the first failure
// sticks in err and every later read returns zero.
type entryReader struct {
	b   []byte
	err error
}

func (d *entryReader) fail(err error) {
	if d.err == nil {
		d.err = err
	}
	d.b = nil
}

func (d *entryReader) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail(errJournalShort)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *entryReader) num() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail(errJournalShort)
		return 0
	}
	d.b = d.b[n:]
	return v
}

// int is a varint that must fit an int, as every value EncodeJournalEntry
// wrote from one does.
func (d *entryReader) int() int {
	v := d.num()
	if int64(int(v)) != v {
		d.fail(fmt.Errorf("integer %d out of range", v))
		return 0
	}
	return int(v)
}

// count is a uvarint count of header pairs, bounded by what is left.
func (d *entryReader) count() int {
	n := d.uvarint()
	if n > uint64(len(d.b))/2 {
		d.fail(errJournalShort)
		return 0
	}
	return int(n)
}

func (d *entryReader) bytes() []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.fail(errJournalShort)
		return nil
	}
	out := d.b[:n:n]
	d.b = d.b[n:]
	return out
}

func (d *entryReader) str() string { return string(d.bytes()) }

func (d *entryReader) byte() byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) == 0 {
		d.fail(errJournalShort)
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}
