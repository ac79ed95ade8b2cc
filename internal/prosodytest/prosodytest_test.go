package prosodytest

import (
	"context"
	"strings"
	"testing"
	"time"

	"mellium.im/xmpp/jid"
)

// TestStartRegisterDialRestart: a user created with prosodyctl logs in;
// after a restart on the same ports and data the user is still there; a
// wrong password is refused.
func TestStartRegisterDialRestart(t *testing.T) {
	s := Start(t, Options{})
	u := s.Register(t, "alice", "pw")
	if u.String() != "alice@xmpp.localhost" {
		t.Fatalf("registered %s", u)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	sess, err := s.Dial(ctx, jid.MustParse("alice@xmpp.localhost/t"), "pw")
	if err != nil {
		t.Fatal(err)
	}
	if got := sess.LocalAddr().Bare().String(); got != "alice@xmpp.localhost" {
		t.Fatalf("bound %s", got)
	}
	sess.Close()
	if _, err := s.Dial(ctx, jid.MustParse("alice@xmpp.localhost/t"), "wrong"); err == nil {
		t.Fatal("a wrong password was accepted")
	}
	s.Stop()
	s.Restart(t)
	sess, err = s.Dial(ctx, jid.MustParse("alice@xmpp.localhost/t"), "pw")
	if err != nil {
		t.Fatalf("after restart: %v", err)
	}
	sess.Close()
	if !strings.Contains(s.Log(), "Authenticated as alice@xmpp.localhost") {
		t.Errorf("prosody's log does not show the login:\n%s", s.Log())
	}
}
