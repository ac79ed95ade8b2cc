package pua

import "github.com/puaside/puaside/clock"

// Clock is the engine's source of time (clock.Clock). Refreshes, backoff,
// lifetimes and write-behind run on it, so tests can drive them without
// sleeping. Network timeouts (request_timeout) use real time.
type Clock = clock.Clock

// Timer is a pending AfterFunc or At call.
type Timer = clock.Timer
