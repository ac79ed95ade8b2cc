// Package resolve finds where to send a SIP request whose destination is
// given as a name (RFC 3263): NAPTR records choose the transport, SRV
// records the servers in priority and weight order, A and AAAA records
// their addresses. Answers are cached for their TTL (negative answers for
// the zone's SOA minimum, capped), the number of records taken from one
// answer and of targets returned are bounded, and CNAME chains are
// followed a bounded number of times with loops detected.
//
// The resolver asks one configured DNS server (or the first nameserver of
// /etc/resolv.conf) directly, so tests can point it at a server of their
// own.
package resolve
