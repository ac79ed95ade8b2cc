// Package wsguard bounds what a WebSocket (RFC 6455) client of a SIP
// server may cost before and after sipgo's WS/WSS transport reads it: the
// TLS handshake and HTTP upgrade request run in a goroutine per
// connection under a deadline (sipgo upgrades in its accept loop, where
// one stalled client would block every other), at most so many at once,
// and each frame header is checked as it arrives: text frames of one
// bounded size only, no fragmentation, binary frames or control payloads
// (which sipgo's reader drops or misreads), and a rate limit per
// connection. A refused connection is closed with a DropError naming the
// reason.
//
// Place in the flow: watchers → pa's ws:/wss: listeners (this package) →
// sipgo → pa.
package wsguard
