package main

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"
)

// TestMain lets the test binary be the floor's relay, as the tool is with
// -floor: started with puaside's command line, it relays instead of
// running the tests.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == floorCommand {
		relayMain(os.Args[2:])
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestFloorRelay measures the floor as -floor does, for both inputs: the
// relay is a separate process that answers every t_replicate copy and
// publishes each AoR once (HEP: on its 200), so that the tool's figures
// for it are complete.
func TestFloorRelay(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	const users = 100
	for _, input := range []string{inputReplicate, inputHEP} {
		t.Run(input, func(t *testing.T) {
			r, err := run(ctx, options{Rate: 200, Users: users, Duration: 30 * time.Second, Drain: 30 * time.Second,
				Input: input, Proc: true, Bin: self, Log: testWriter{t}})
			if err != nil {
				t.Fatal(err)
			}
			wantAnswered := int64(users)
			if input == inputHEP {
				wantAnswered = 0
			}
			if r.Sent != users || r.Published != users || r.Lost != 0 || r.PublishTotal != users || r.Answered != wantAnswered {
				t.Fatalf("sent %d, published %d (%d PUBLISHes), lost %d, answered %d; want %d, %d (%d), 0, %d",
					r.Sent, r.Published, r.PublishTotal, r.Lost, r.Answered, users, users, users, wantAnswered)
			}
			if !r.Separate || r.RSSMiB <= 0 {
				t.Errorf("the relay's process not measured: %+v", r)
			}
		})
	}
}

// TestFloorAnswer: the relay's 200 carries the request's dialog headers
// and nothing of its body or other headers.
func TestFloorAnswer(t *testing.T) {
	req := "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1\r\n" +
		"via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK2\r\nFrom: <sip:u1@example.com>;tag=a\r\n" +
		"To: <sip:u1@example.com>\r\nCall-ID: c1\r\nCSeq: 1 REGISTER\r\nContact: <sip:u1@10.0.0.1>\r\n" +
		"Content-Length: 4\r\n\r\nVia:"
	want := "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1\r\n" +
		"via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK2\r\nFrom: <sip:u1@example.com>;tag=a\r\n" +
		"To: <sip:u1@example.com>\r\nCall-ID: c1\r\nCSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n"
	if got := string(answer(nil, []byte(req))); got != want {
		t.Fatalf("answer:\n%q\nwant\n%q", got, want)
	}
	if aor, ok := toURI([]byte(req)); !ok || aor != "sip:u1@example.com" {
		t.Fatalf("toURI: %q, %v", aor, ok)
	}
	if _, ok := toURI([]byte("SIP/2.0 200 OK\r\nFrom: <sip:x>\r\n\r\n")); ok {
		t.Fatal("toURI found a To header in a message without one")
	}
	if p := string((&floor{via: "127.0.0.1:1"}).publish(nil, "sip:u1@example.com")); !strings.HasPrefix(p, "PUBLISH sip:u1@example.com SIP/2.0\r\n") {
		t.Fatalf("publish starts %q", p[:min(len(p), 40)])
	}
}
