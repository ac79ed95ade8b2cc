// Package siplisten holds the SIP listeners of the pua engine and the
// embedded presence server (pa): it parses their listen entries, creates
// the sipgo user agent with its server and client, runs a serve loop per
// listener and waits until sipgo's transport layer knows a UDP listener.
// It sits below the engine and pa, at the SIP end of the flow.
package siplisten

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"time"

	"github.com/emiago/sipgo"
)

// readyWithin bounds WaitUDP.
const readyWithin = 2 * time.Second

// Serve runs serve in its own goroutine; when it ends other than by its
// listener being closed, the end is logged at debug level with transport
// and addr.
func Serve(log *slog.Logger, transport, addr string, serve func() error) {
	go run(log, transport, addr, serve)
}

// run is Serve's goroutine.
func run(log *slog.Logger, transport, addr string, serve func() error) {
	if err := serve(); err != nil && !errors.Is(err, net.ErrClosed) {
		log.Debug("listener ended", "transport", transport, "addr", addr, "err", err)
	}
}

// WaitUDP waits (up to 2 s, or until ctx ends) until ua's transport layer
// serves the UDP listener key (host:port), and reports whether it does. A
// request bound to that address before then would make sipgo try to bind
// it again and fail; NOTIFYs and PUBLISHes go out from it only after.
func WaitUDP(ctx context.Context, ua *sipgo.UserAgent, key string) bool {
	tl := ua.TransportLayer()
	deadline := time.Now().Add(readyWithin)
	for {
		if c, err := tl.GetConnection("udp", key); err == nil && c != nil {
			return true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(time.Millisecond)
	}
}
