// Package ingest is the only part of puaside that reads mirrored traffic.
//
// It receives what the proxy sees, in four shapes:
//
//   - t_replicate copies on replicate_listen (UDP/TCP): raw SIP requests
//     addressed to puaside, each answered with a stateless 200 OK;
//   - siptrace / tracer plain copies on trace_listen (UDP): requests and
//     replies, never answered;
//   - HEPv3 packets on hep_listen (UDP/TCP), decoded here, never answered;
//   - JSON events POSTed to /v1/events (registrations, dialog states,
//     OpenSIPS E_UL_CONTACT_* and E_DLG_STATE_CHANGED), see EVENTS.md.
//
// Every input goes through the same pipeline: trust check (trusted_sources)
// → parse → length bounds (max_uri_length, max_callid_length,
// max_tag_length, max_header_length) → deduplication → classification → a
// bounded queue, sharded by AoR or call. Worker goroutines, one per shard,
// take items from the queue and hand normalised events (event.SIP,
// event.Registration, event.DialogState) to the Handlers that the wiring
// code supplies: the usrloc, dialoginfo and bla trackers, which in turn
// drive the pua engine (PUBLISH/SUBSCRIBE out, state in the store). A UDP
// reader that is not behind (it found its socket empty before a datagram,
// or before one of the few just before it: a reply copy follows its
// request's, and a preempted reader finds a few waiting) hands that input
// to the Handlers itself when its shard has nothing queued or in
// delivery, which spares a goroutine hand-off per input at ordinary
// rates; a reader that is behind queues, so that the workers spread a
// burst over the processors. Inputs of one shard are delivered in arrival
// order either way. The Handlers must not block for long (they do not: the
// trackers write to the store from timers).
//
// Mirrored traffic never enters a sipgo Server: the sockets here are plain
// net.PacketConn / net.Listener, parsed with sipgo's parser only, so no
// transaction is created and nothing is answered except the 200 OK due to a
// replicated request.
package ingest
