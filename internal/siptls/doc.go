// Package siptls is SIP over TLS for puaside's SIP stacks: the pua
// engine's listeners and client connections, and the embedded presence
// server's (pa) `tls:` and `wss:` listeners. It holds the certificate, key
// and CA bundle, reloads them when they change on disk, verifies peers as
// configured (RFC 5922 names) and bounds the server handshake in time.
//
// Place in the flow: pua engine / pa → SIP (this package, under sipgo).
package siptls
