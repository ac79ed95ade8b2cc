package kamailiotest

import (
	"context"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/puaside/puaside/internal/sipphone"
)

// TestRegistrarFanout: with WITH_FANOUT every REGISTER is replicated to
// each of three instances and every call message, in-dialog requests and
// relayed replies included, is traced to each.
func TestRegistrarFanout(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rep := []*mirror{newMirror(t, true), newMirror(t, true), newMirror(t, true)}
	tr := []*mirror{newMirror(t, false), newMirror(t, false), newMirror(t, false)}
	reg := startRegistrar(t, map[string]string{"WITH_FANOUT": "",
		"PUASIDE_REPLICATE_URI": Str(rep[0].uri()), "PUASIDE_REPLICATE_URI2": Str(rep[1].uri()), "PUASIDE_REPLICATE_URI3": Str(rep[2].uri()),
		"PUASIDE_TRACE_URI": Str(tr[0].uri()), "PUASIDE_TRACE_URI2": Str(tr[1].uri()), "PUASIDE_TRACE_URI3": Str(tr[2].uri())})
	alice := sipphone.NewPhone(t, "alice", domain)
	bob := sipphone.NewPhone(t, "bob", domain)
	register(ctx, t, alice, reg)
	register(ctx, t, bob, reg)
	for _, m := range rep {
		req := m.waitSIP(ctx, t, "REGISTER copy", nil, isReq(sip.REGISTER)).(*sip.Request)
		if c := req.Contact(); c == nil || c.Address.User == "" {
			t.Errorf("copy without the phone's Contact: %v", req.Contact())
		}
	}
	call, err := alice.Invite(ctx, reg.Addr(), uri("bob"))
	if err != nil {
		t.Fatal(err)
	}
	if err := call.WaitAnswer(ctx); err != nil {
		t.Fatalf("call alice→bob: %v", err)
	}
	if err := call.Bye(ctx); err != nil {
		t.Fatal(err)
	}
	for _, m := range tr {
		m.waitSIP(ctx, t, "traced INVITE", nil, isReq(sip.INVITE))
		m.waitSIP(ctx, t, "traced 200 to INVITE", nil, isRes(200, sip.INVITE))
		m.waitSIP(ctx, t, "traced ACK", nil, isReq(sip.ACK))
		m.waitSIP(ctx, t, "traced BYE", nil, isReq(sip.BYE))
		m.waitSIP(ctx, t, "traced 200 to BYE", nil, isRes(200, sip.BYE))
	}
	for _, m := range tr {
		m.mu.Lock()
		for _, p := range m.packets {
			if msg, err := sip.ParseMessage(p); err == nil && isReq(sip.REGISTER)(msg) {
				t.Error("REGISTER traced as well as replicated")
			}
		}
		m.mu.Unlock()
	}
}
