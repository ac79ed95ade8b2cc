// Package aor is the one rule for addresses of record. Every part of the
// flow that turns a URI into the key of a user reduces it here: ingest (the
// ordering key of REGISTER copies and JSON events), usrloc (the AoR of a
// REGISTER and of the API), bla (shared-line AoRs and their members),
// dialoginfo (the caller and callee of a call), reconcile (the registrar's
// AoRs) and mgmt (the {aor} of a request). Because they all use the same
// rule, an AoR spelled "sips:100@Example.com:5060;transport=tcp" in one
// place and "100" (with a default domain) in another is the same user.
//
// The rule: sip: and sips: name the same AoR (always rendered sip:), the
// host is lowercased, the port, URI parameters and headers are dropped, the
// user part keeps its case (SIP users are case-sensitive) and a bare user
// gets the default domain. The %HH escapes of the user part are normalised
// as RFC 3261 §19.1.4 compares them: an escaped unreserved character is
// the character itself ("al%69ce" is "alice"), a reserved one stays escaped
// with upper-case hex digits ("a%2bb" is "a%2Bb", another user than
// "a+b"); a user with a '%' that starts no escape is left as it is. The
// package imports only sipgo.
package aor
