package usrloc

import (
	"crypto/sha256"
	"strings"
	"time"

	"github.com/puaside/puaside/pua"
)

// publishOn is the effective publishing decision for an AoR: an explicit
// per-user flag (header, management API) wins; else a matching pattern
// publishes; else publish_default decides.
func (t *Tracker) publishOn(aor string) bool {
	if on, ok := t.flags[aor]; ok {
		return on
	}
	bare := strings.TrimPrefix(aor, "sip:")
	for _, re := range t.patterns {
		if re.MatchString(bare) {
			return true
		}
	}
	return t.cfg.PublishDefault
}

func (t *Tracker) key(aor string) pua.Key {
	return pua.Key{PresURI: aor, Event: "presence", ID: t.cfg.PresID}
}

// syncPublication makes the publisher's desired state match st. Must hold mu.
func (t *Tracker) syncPublication(st *aorState, now time.Time) {
	on := t.publishOn(st.aor)
	switch {
	case on && len(st.contacts) > 0:
		st.linger = 0
		t.publishDoc(st, BuildPIDF(Entity(st.aor, t.cfg.EntityPrefix), st.contacts), false, now)
	case on && st.published && !st.closed:
		if t.cfg.ClosedLinger <= 0 {
			t.remove(st)
			return
		}
		t.publishDoc(st, BuildPIDF(Entity(st.aor, t.cfg.EntityPrefix), nil), true, now)
		st.linger = now.Add(t.cfg.ClosedLinger).UnixNano()
	case on && st.published && st.closed:
		if st.linger == 0 {
			st.linger = now.Add(t.cfg.ClosedLinger).UnixNano()
		}
		if now.UnixNano() >= st.linger {
			t.remove(st)
		}
	case !on && st.published:
		t.remove(st)
	}
}

// publishDoc hands doc to the publisher unless it is the one already
// published with a lease that still fits its contacts (see publishExpires).
func (t *Tracker) publishDoc(st *aorState, doc []byte, closed bool, now time.Time) {
	d := digestOf(doc)
	exp := t.publishExpires(st, now, closed)
	if st.published && d == st.digest && !leaseTooShort(st.asked, exp) {
		return
	}
	err := t.pub.Publish(pua.PublishRequest{
		Key: t.key(st.aor), Body: doc, ContentType: ContentTypePIDF,
		Expires: exp, Flag: pua.FlagUsrloc,
	})
	if err != nil {
		t.count("publish_error")
		t.log.Error("usrloc: publish", "aor", st.aor, "err", err)
		return
	}
	st.digest, st.published, st.closed, st.asked = d, true, closed, exp
	if closed {
		t.count("closed")
	} else {
		t.count("published")
	}
}

// remove ends the AoR's publication.
func (t *Tracker) remove(st *aorState) {
	if err := t.pub.Remove(t.key(st.aor)); err != nil {
		t.count("remove_error")
		t.log.Error("usrloc: remove publication", "aor", st.aor, "err", err)
	}
	t.count("removed")
	st.published, st.closed, st.linger, st.digest = false, false, 0, docDigest{}
}

// digestLen is how many bytes of a document's SHA-256 an AoR keeps to
// tell whether a document is the one last published: 112 bits leave a
// changed document unpublished with a chance of 2⁻¹¹², and leave room in
// aorState for its two flags.
const digestLen = 14

// docDigest identifies a document handed to the publisher.
type docDigest [digestLen]byte

// digestOf returns the digest of a document.
func digestOf(doc []byte) docDigest {
	sum := sha256.Sum256(doc)
	return docDigest(sum[:digestLen])
}
