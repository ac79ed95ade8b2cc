// Package board is puaside's live lamp board: a page served by the
// management HTTP server at /board that shows, for every AoR, its
// registration state, its dialog lamp and the publications the presence
// server refuses, the shared lines (BLA) with the phone holding each
// appearance, and the presence server's reachability.
//
// It sits beside the main flow ingest → trackers (usrloc, dialoginfo, bla)
// → pua engine / pa → SIP and store, as an observer: the daemon hands it the
// REGISTER and call messages ingest delivers, the contact sets usrloc
// settles on, the publications the trackers ask the engine for (the lamps
// the phones see) and the engine's PUBLISH results (see Observer); it
// reads the shared lines (LineSource) and the presence server's
// reachability (ServerCheck) itself. An embedded presence server feeds it
// its watchers through Board.Watchers. The board never changes state.
//
// The page is plain HTML, CSS and JavaScript embedded in the binary. It
// reads /board/events, a Server-Sent Events stream: one snapshot, then
// deltas, each event carrying its version as the SSE id so that a
// reconnecting page (Last-Event-ID) gets only what changed, or a fresh
// snapshot when the daemon restarted. Changes are coalesced per item: a
// client holds only the version it has seen, and an AoR changed ten times
// between two writes is sent once, so a burst never queues up in memory.
// Nor is it encoded ten times: a change only marks its item, and the items
// marked are rendered to JSON when a client's writer reads them, so that
// the board costs next to nothing while no page is open.
// A client that cannot keep up is dropped and counted
// (puaside_board_clients_dropped_total).
package board
