package main

import (
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/emiago/sipgo/sip"
)

// fakePresence is a stateless presence server: every PUBLISH gets a 200
// with a SIP-ETag and the Expires asked for.
type fakePresence struct {
	publishServer
	arrival   []atomic.Int64 // first PUBLISH per user index, Unix ns
	published atomic.Int64   // users with a PUBLISH
	total     atomic.Int64   // all PUBLISH requests
}

// startFakePresence listens on a free 127.0.0.1 port for up to users AoRs.
func startFakePresence(users int) (*fakePresence, error) {
	f := &fakePresence{arrival: make([]atomic.Int64, users)}
	if err := f.listen(); err != nil {
		return nil, err
	}
	f.start(func(req *sip.Request, _ string, now int64) {
		f.total.Add(1)
		f.record(req.Recipient.User, now)
	})
	return f, nil
}

// record notes the first PUBLISH of user "u<index>".
func (f *fakePresence) record(user string, now int64) {
	i, err := strconv.Atoi(strings.TrimPrefix(user, "u"))
	if err != nil || i < 0 || i >= len(f.arrival) {
		return
	}
	if f.arrival[i].CompareAndSwap(0, now) {
		f.published.Add(1)
	}
}
