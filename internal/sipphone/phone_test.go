package sipphone

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/emiago/sipgo"
)

// TestDirectCalls places calls straight from one phone to the other (the
// callee's socket as next hop), one per answering policy.
func TestDirectCalls(t *testing.T) {
	tests := []struct {
		name   string
		policy Policy
		want   int
	}{
		{"answer", AutoAnswer, 200},
		{"busy", RejectWith(486), 486},
		{"decline", RejectWith(603), 603},
	}
	alice := NewPhone(t, "alice", "127.0.0.1")
	bob := NewPhone(t, "bob", "127.0.0.1")
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			bob.SetPolicy(tc.policy)
			call, err := alice.Invite(ctx, bob.Addr(), bob.ContactURI("bob"))
			if err != nil {
				t.Fatal(err)
			}
			err = call.WaitAnswer(ctx)
			if call.Code() != tc.want {
				t.Fatalf("final %d (err %v), want %d", call.Code(), err, tc.want)
			}
			if tc.want != 200 {
				var de *sipgo.ErrDialogResponse
				if !errors.As(err, &de) {
					t.Fatalf("err %v, want ErrDialogResponse", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := call.Bye(ctx); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestDirectCancel(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	alice := NewPhone(t, "alice", "127.0.0.1")
	bob := NewPhone(t, "bob", "127.0.0.1")
	bob.SetPolicy(KeepRinging)
	call, err := alice.Invite(ctx, bob.Addr(), bob.ContactURI("bob"))
	if err != nil {
		t.Fatal(err)
	}
	var in *IncomingCall
	select {
	case in = <-bob.Incoming():
	case <-ctx.Done():
		t.Fatal("bob did not ring")
	}
	if err := call.Cancel(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-in.Done():
	case <-ctx.Done():
		t.Fatal("callee call not ended")
	}
	if in.Code() != 487 {
		t.Errorf("callee final %d, want 487", in.Code())
	}
}
