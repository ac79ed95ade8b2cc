package dialoginfo

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/puaside/puaside/event"
	"github.com/puaside/puaside/internal/puatest"
	"github.com/puaside/puaside/internal/puatest/recorder"
)

// FuzzHandleSIP feeds arbitrary bytes, split into up to 8 messages at
// "\x00\x00", through sip.ParseMessage into a tracker: nothing panics, every
// document is valid, and once every timer has run nothing stays published.
func FuzzHandleSIP(f *testing.F) {
	for _, dir := range []string{"basic", "forking", "hold", "cancel"} {
		files, _ := filepath.Glob(filepath.Join("testdata", dir, "*.sip"))
		var seed [][]byte
		for _, p := range files {
			b, err := os.ReadFile(p)
			if err != nil {
				f.Fatal(err)
			}
			seed = append(seed, puatest.FixSIP(b))
		}
		f.Add(bytes.Join(seed, []byte("\x00\x00")))
	}
	f.Add([]byte("BYE sip:a@b SIP/2.0\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 1 BYE\r\n\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		clk := newFakeClock()
		pub := recorder.New()
		tr, err := New(DefaultConfig(), Options{Publisher: pub, Clock: clk, Logger: quietLog()})
		if err != nil {
			t.Fatal(err)
		}
		val := newValidator()
		parts := bytes.SplitN(data, []byte("\x00\x00"), 8)
		for _, p := range parts {
			m, err := sip.ParseMessage(p)
			if err != nil {
				continue
			}
			tr.HandleSIP(context.Background(), event.SIP{Msg: m, Source: event.SourceTrace})
			clk.Advance(time.Second)
			tr.Expire(clk.Now())
		}
		tr.Expire(clk.Advance(48 * time.Hour))
		tr.Expire(clk.Advance(time.Hour))
		for _, op := range pub.Take() {
			if op.Kind == recorder.Remove {
				continue
			}
			if err := val.check(op.Key.PresURI, op.Req.Body); err != nil {
				t.Fatalf("invalid document: %v\n%s", err, op.Req.Body)
			}
		}
		if len(tr.calls) != 0 || stuck(pub) != 0 || tr.sched.Len() != 0 {
			t.Fatalf("stuck: %d calls, %d publications, %d timers", len(tr.calls), stuck(pub), tr.sched.Len())
		}
	})
}
