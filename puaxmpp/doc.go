// Package puaxmpp is the SIP ↔ XMPP presence gateway, the job of
// Kamailio's pua_xmpp (with its xmpp module) done beside the proxy.
//
// In the flow ingest → trackers → pua engine / pa → SIP and store, the
// Gateway is a tracker whose input is an XMPP server instead of mirrored
// SIP: it connects to the site's XMPP server as an XEP-0114 external
// component (mellium.im/xmpp), and
//   - turns XMPP users' presence (per resource, composed per bare JID) into
//     PIDF publications through the same Publisher interface the other
//     trackers use (the pua engine, or pa in process);
//   - turns an XMPP user's subscription to a SIP user into a SIP presence
//     subscription held by the pua engine on the XMPP user's behalf, kept
//     refreshed while the XMPP subscription lasts, and its NOTIFYs into
//     <presence/> stanzas;
//   - turns a SIP watcher of an XMPP user into one XMPP subscription
//     request: from the presence.winfo NOTIFYs of a subscription to the
//     XMPP user's winfo at the presence server (as pua_xmpp does, only
//     while pa does not run), or from the presence server in process (pa)
//     calling WatcherAdded and WatcherRemoved.
//
// Addresses map one to one (RFC 7247), optionally through a domain map, or
// with Kamailio's separator encoding (Mapper). The stanza and document
// mappings are in mapping.go; every input from the XMPP server is bounded
// (size, depth, elements), counted and logged when refused, and the
// connection is re-established with backoff when it drops.
package puaxmpp
