package proxyrpc

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
)

// Bindings is a snapshot of a registrar's location table.
type Bindings struct {
	// AoRs are the records, in the order the registrar listed them.
	AoRs []AoR
	// Skipped counts records that could not be read (no usable AoR). When
	// it is not zero the snapshot does not list every AoR of the table.
	Skipped int
	// Lapsed counts contacts listed as expired or deleted (not bindings any
	// more; left out of Contacts).
	Lapsed int
}

// AoR is one address of record and its bindings.
type AoR struct {
	// Name is the AoR as the registrar keys it: "alice" with usrloc's
	// use_domain=0, "alice@example.com" with use_domain=1.
	Name string
	// Contacts are the live bindings.
	Contacts []Contact
	// Incomplete is true when at least one contact could not be read: the
	// AoR has bindings that Contacts does not show.
	Incomplete bool
}

// Contact is one binding.
type Contact struct {
	// URI is the contact URI.
	URI string
	// Remaining is the binding's remaining lifetime when the snapshot was
	// taken; zero for a permanent binding.
	Remaining int
	// Permanent is true for a binding that never expires (ul.add with
	// expires 0, db-only static entries).
	Permanent bool
	// Q is the q value in [0,1]; -1 when not stated.
	Q float64
	// CallID and CSeq are those of the REGISTER that last refreshed it.
	CallID string
	CSeq   uint32
	// UserAgent, Received and Instance are "" when the registrar has none.
	UserAgent string
	Received  string
	Instance  string
}

// ulDump is the shape of Kamailio 5.6's ul.dump result, decoded leniently:
// each record and contact is kept raw and read on its own, so that one bad
// entry does not hide the others.
type ulDump struct {
	Domains []struct {
		Domain struct {
			Domain string            `json:"Domain"`
			AoRs   []json.RawMessage `json:"AoRs"`
		} `json:"Domain"`
	} `json:"Domains"`
}

// ulDumpTyped is the same shape decoded in one pass (the common case: a
// well-formed answer).
type ulDumpTyped struct {
	Domains []struct {
		Domain struct {
			Domain string       `json:"Domain"`
			AoRs   []ulAoRTyped `json:"AoRs"`
		} `json:"Domain"`
	} `json:"Domains"`
}

type ulAoRTyped struct {
	Info struct {
		AoR      *string     `json:"AoR"`
		Contacts []ulContact `json:"Contacts"`
	} `json:"Info"`
}

type ulAoR struct {
	Info struct {
		AoR      *string           `json:"AoR"`
		Contacts []json.RawMessage `json:"Contacts"`
	} `json:"Info"`
}

type ulContact struct {
	Contact *struct {
		Address   string          `json:"Address"`
		Expires   json.RawMessage `json:"Expires"`
		Q         *float64        `json:"Q"`
		CallID    string          `json:"Call-ID"`
		CSeq      int64           `json:"CSeq"`
		UserAgent string          `json:"User-Agent"`
		Received  string          `json:"Received"`
		Instance  string          `json:"Instance"`
	} `json:"Contact"`
}

// ParseULDump reads the result of Kamailio's ul.dump (full form, not
// "brief") and returns the records of table (usrloc's table name, usually
// "location"). A result that is not a ul.dump at all is an error; a record
// or contact that cannot be read is skipped and counted.
func ParseULDump(result []byte, table string) (Bindings, error) {
	var typed ulDumpTyped
	if err := json.Unmarshal(result, &typed); err == nil {
		if typed.Domains == nil {
			return Bindings{}, fmt.Errorf("%w: ul.dump: no Domains", ErrProtocol)
		}
		found := false
		var out Bindings
		for _, dom := range typed.Domains {
			if dom.Domain.Domain != table {
				continue
			}
			found = true
			for _, r := range dom.Domain.AoRs {
				out.add(r.Info.AoR, len(r.Info.Contacts), r.Info.Contacts == nil, func(i int) (ulContact, bool) {
					return r.Info.Contacts[i], true
				})
			}
		}
		if !found {
			return Bindings{}, fmt.Errorf("%w: ul.dump: no table %q", ErrProtocol, table)
		}
		return out, nil
	}
	return parseULDumpLenient(result, table)
}

// parseULDumpLenient reads a ul.dump that does not decode in one pass.
func parseULDumpLenient(result []byte, table string) (Bindings, error) {
	var d ulDump
	if err := json.Unmarshal(result, &d); err != nil {
		return Bindings{}, fmt.Errorf("%w: ul.dump: %v", ErrProtocol, err)
	}
	if d.Domains == nil {
		return Bindings{}, fmt.Errorf("%w: ul.dump: no Domains", ErrProtocol)
	}
	found := false
	var out Bindings
	for _, dom := range d.Domains {
		if dom.Domain.Domain != table {
			continue
		}
		found = true
		for _, raw := range dom.Domain.AoRs {
			var r ulAoR
			if err := json.Unmarshal(raw, &r); err != nil {
				out.Skipped++
				continue
			}
			out.add(r.Info.AoR, len(r.Info.Contacts), r.Info.Contacts == nil, func(i int) (ulContact, bool) {
				var c ulContact
				err := json.Unmarshal(r.Info.Contacts[i], &c)
				return c, err == nil
			})
		}
	}
	if !found {
		return Bindings{}, fmt.Errorf("%w: ul.dump: no table %q", ErrProtocol, table)
	}
	return out, nil
}

// add appends one record: name is its AoR, contact(i) its i-th of n
// contacts (false when unreadable). noContacts is true when the record has
// no contact list at all (the brief form).
func (b *Bindings) add(name *string, n int, noContacts bool, contact func(int) (ulContact, bool)) {
	if name == nil || !uriOK(*name) {
		b.Skipped++
		return
	}
	// The brief form lists no contacts: nothing is known about them.
	a := AoR{Name: *name, Incomplete: noContacts}
	for i := 0; i < n; i++ {
		rc, ok := contact(i)
		var c Contact
		state := contactLive
		if ok {
			c, state, ok = parseContact(rc)
		}
		switch {
		case !ok:
			a.Incomplete = true
		case state == contactLapsed:
			b.Lapsed++
		default:
			a.Contacts = append(a.Contacts, c)
		}
	}
	b.AoRs = append(b.AoRs, a)
}

const (
	contactLive = iota
	contactLapsed
)

// parseContact checks one contact.
func parseContact(r ulContact) (Contact, int, bool) {
	if r.Contact == nil {
		return Contact{}, 0, false
	}
	rc := r.Contact
	if !uriOK(rc.Address) {
		return Contact{}, 0, false
	}
	c := Contact{URI: rc.Address, Q: -1, UserAgent: optional(rc.UserAgent),
		Received: optional(rc.Received), Instance: optional(rc.Instance)}
	if tokenOK(rc.CallID) {
		c.CallID = rc.CallID
	}
	if rc.CSeq > 0 && rc.CSeq <= math.MaxUint32 {
		c.CSeq = uint32(rc.CSeq)
	}
	if rc.Q != nil && *rc.Q >= 0 {
		if *rc.Q > 1 || math.IsNaN(*rc.Q) {
			return Contact{}, 0, false
		}
		c.Q = *rc.Q
	}
	// Expires is the remaining lifetime in seconds, or one of the words
	// "permanent", "expired", "deleted".
	if len(rc.Expires) > 0 && rc.Expires[0] == '"' {
		var word string
		if err := json.Unmarshal(rc.Expires, &word); err != nil {
			return Contact{}, 0, false
		}
		switch word {
		case "permanent":
			c.Permanent = true
			return c, contactLive, true
		case "expired", "deleted":
			return c, contactLapsed, true
		}
		return Contact{}, 0, false
	}
	n, err := strconv.ParseInt(string(rc.Expires), 10, 64)
	if err != nil || n < 0 || n > math.MaxInt32 {
		return Contact{}, 0, false
	}
	if n == 0 {
		return c, contactLapsed, true
	}
	c.Remaining = int(n)
	return c, contactLive, true
}

// Kamailio reads a Kamailio proxy's state over jsonrpcs.
type Kamailio struct {
	// Client is the JSON-RPC client for the proxy's /RPC URL.
	Client *Client
	// Table is usrloc's location table ("" means "location").
	Table string
}

// Bindings returns ul.dump of the location table.
func (k Kamailio) Bindings(ctx context.Context) (Bindings, error) {
	res, err := k.Client.Call(ctx, "ul.dump")
	if err != nil {
		return Bindings{}, err
	}
	t := k.Table
	if t == "" {
		t = "location"
	}
	return ParseULDump(res, t)
}

// Dialogs returns dlg.list.
func (k Kamailio) Dialogs(ctx context.Context) (Dialogs, error) {
	res, err := k.Client.Call(ctx, "dlg.list")
	if err != nil {
		return Dialogs{}, err
	}
	return ParseDlgList(res)
}
