package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/emiago/sipgo/sip"

	"github.com/puaside/puaside/bla"
	"github.com/puaside/puaside/internal/puatest"
	"github.com/puaside/puaside/internal/sipphone"
)

// chromiumPath is Debian's chromium.
const chromiumPath = "/usr/bin/chromium"

// newBrowser starts headless chromium with a fresh profile and returns a
// tab context; the browser is closed when the test ends.
func newBrowser(t testing.TB) context.Context {
	t.Helper()
	if _, err := exec.LookPath(chromiumPath); err != nil {
		t.Fatalf("chromium is required for the board tests (apt install chromium): %v", err)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.WindowSize(1280, 800),
	}
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancel()
		acancel()
	})
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// waitJS polls a JavaScript expression in the page until it is true or
// waitLimit passes; the failure shows what.
func waitJS(t *testing.T, ctx context.Context, what, expr string) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool]("Boolean("+expr+")"))
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			body, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.innerText`))
			t.Fatalf("board: timed out waiting for %s (%s; err %v)\npage:\n%s", what, expr, err, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// shot saves a screenshot of the page as a test artefact (go test
// -artifacts keeps it) and, when PUASIDE_BOARD_PNG names a directory, a
// copy there.
func shot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	dirs := []string{t.ArtifactDir()}
	if d := os.Getenv("PUASIDE_BOARD_PNG"); d != "" {
		dirs = append(dirs, d)
	}
	for _, d := range dirs {
		p := filepath.Join(d, name+".png")
		if err := os.WriteFile(p, png, 0o644); err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		t.Logf("screenshot %s", p)
	}
}

// rowJS is the expression of the board's row for an AoR.
func rowJS(aor string) string {
	return fmt.Sprintf(`document.querySelector('.row[data-aor=%q]')`, aor)
}

// refusedAoR is the AoR whose presence the fake presence server refuses.
const refusedAoR = "sip:mallory@example.com"

// TestBoardBrowser drives the lamp board in headless chromium against a
// running daemon fed by real SIP peers through the Kamailio registrar
// (siptrace): a registration turns a lamp green, a call rings then is busy
// then idle, a BLA seize shows on the shared line, a refused publication
// shows its SIP code and reason (row and detail panel), and after the
// daemon restarts the page reconnects and resumes without a reload.
func TestBoardBrowser(t *testing.T) {
	var fake *puatest.PresenceServer
	ready := make(chan struct{}) // closed once fake is set
	fake = puatest.NewPresenceServer(t, puatest.ServerOptions{Name: "board-presence", Publish: func(req *sip.Request, tx sip.ServerTransaction) {
		<-ready
		if req.To() != nil && strings.EqualFold(req.To().Address.User, "mallory") {
			_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusForbidden, "Forbidden by policy", nil))
			return
		}
		puatest.AcceptPublish(req, tx, fake.NextETag("b"))
	}})
	close(ready)
	cfg := baseConfig(t, nil)
	cfg.PUA.ServerAddress = fake.URI()
	cfg.PUA.RefusedRetryMin = time.Minute
	cfg.PUA.RefusedRetryMax = 2 * time.Minute
	cfg.Dialoginfo.TerminatedLinger = time.Second
	cfg.Dialoginfo.FlushInterval = 200 * time.Millisecond
	cfg.Dialoginfo.IncludeLocalRemote = true // the other party on the lamp
	cfg.BLA.Lines = []bla.LineConfig{{AoR: blaLine}}
	cfg.BLA.ServerAddress = ""
	ps := startPuaside(t, cfg)
	reg := registrar(t, "WITH_SIPTRACE", cfg)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	b := newBrowser(t)
	url := "http://" + cfg.HTTP.HTTPListen + "/board"
	if err := chromedp.Do(b, chromedp.Navigate(url)); err != nil {
		t.Fatalf("open %s: %v", url, err)
	}
	waitJS(t, b, "the stream live", `document.getElementById('conn').dataset.state === 'live'`)
	waitJS(t, b, "the presence server reachable", `document.getElementById('server').dataset.state === 'up'`)

	// A registration turns the lamp green: registered, idle.
	alice := sipphone.NewPhone(t, "alice", "example.com")
	bob := sipphone.NewPhone(t, "bob", "example.com")
	outRegister(ctx, t, reg, alice)
	outRegister(ctx, t, reg, bob)
	for _, a := range []string{"sip:alice@example.com", "sip:bob@example.com"} {
		waitJS(t, b, a+" registered", rowJS(a)+`?.dataset.reg === 'registered'`)
	}
	regColour, err := chromedp.Run(b, chromedp.Evaluate[string](`getComputedStyle(`+rowJS("sip:alice@example.com")+`.querySelector('.reg')).color`))
	if err != nil {
		t.Fatal(err)
	}
	regText, _ := chromedp.Run(b, chromedp.Evaluate[string](rowJS("sip:alice@example.com")+`.querySelector('.reg').textContent`))
	if !strings.Contains(regText, "registered") || !strings.Contains(regColour, "rgb(19, 122, 46)") {
		t.Errorf("alice's registration shown as %q in %s, want the text and green", regText, regColour)
	}
	shot(t, b, "1-registered")

	// A call: bob rings, then both are busy, then idle.
	bob.SetPolicy(sipphone.KeepRinging)
	call, err := alice.Invite(ctx, reg.Addr(), bob.AoR())
	if err != nil {
		t.Fatal(err)
	}
	var in *sipphone.IncomingCall
	for in == nil {
		select {
		case ic := <-bob.Incoming():
			if ic.Request.CallID().Value() == call.CallID() {
				in = ic
			}
		case <-ctx.Done():
			t.Fatal("bob did not ring")
		}
	}
	waitJS(t, b, "bob ringing", rowJS("sip:bob@example.com")+`?.dataset.lamp === 'ringing'`)
	waitJS(t, b, "alice trying", rowJS("sip:alice@example.com")+`?.dataset.lamp === 'trying'`)
	waitJS(t, b, "the caller shown on bob's row", rowJS("sip:bob@example.com")+`.querySelector('.ua').textContent.includes('alice')`)
	shot(t, b, "2-ringing")
	in.Answer()
	if err := call.WaitAnswer(ctx); err != nil {
		t.Fatalf("answer: %v", err)
	}
	waitJS(t, b, "bob talking", rowJS("sip:bob@example.com")+`?.dataset.lamp === 'talking'`)
	waitJS(t, b, "alice talking", rowJS("sip:alice@example.com")+`?.dataset.lamp === 'talking'`)
	shot(t, b, "3-talking")
	if err := call.Bye(ctx); err != nil {
		t.Fatalf("bye: %v", err)
	}
	waitJS(t, b, "bob idle", rowJS("sip:bob@example.com")+`?.dataset.lamp === 'idle'`)
	waitJS(t, b, "alice idle", rowJS("sip:alice@example.com")+`?.dataset.lamp === 'idle'`)
	// Alice's detail panel lists the call's messages.
	if _, err := chromedp.Run(b, chromedp.Evaluate[bool](`(`+rowJS("sip:alice@example.com")+`.click(), true)`)); err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"INVITE sip:alice@example.com → sip:bob@example.com", "180 Ringing (INVITE)", "200 OK (INVITE)", "BYE"} {
		waitJS(t, b, "the call's "+m+" in alice's last events", fmt.Sprintf(`[...document.querySelectorAll('#detailbody .events li[data-kind=call]')].some(li => li.textContent.includes(%q))`, m))
	}
	if err := chromedp.Do(b, chromedp.KeyEvent(kb.Escape)); err != nil {
		t.Fatal(err)
	}
	waitJS(t, b, "the detail panel closed", `document.getElementById('detail').hidden`)

	// A BLA seize shows on the shared line with the phone holding it.
	ph := newPolycom(t, "line100", "example.com")
	if res, err := ph.register(ctx, reg.Addr(), 300); err != nil || res.StatusCode != 200 {
		t.Fatalf("register the shared-line phone: %v %v", res, err)
	}
	if err := ph.waitUntil(ctx, "an initial NOTIFY answered", func() bool { return len(ph.codes) >= 1 }); err != nil {
		t.Fatal(err)
	}
	code, err := ph.notify(ctx, "active;expires=300", blaDoc(blaLine, 1, "partial", blaDialog{"seize-1", "trying", "1"}))
	if err != nil || code != 200 {
		t.Fatalf("seize NOTIFY: %d %v", code, err)
	}
	appearance := fmt.Sprintf(`document.querySelector('.linecard[data-line=%q] .appearance[data-index="1"]')`, blaLine)
	waitJS(t, b, "the seized appearance", appearance+`?.dataset.state === 'trying'`)
	waitJS(t, b, "the phone holding it", appearance+`.textContent.includes(`+fmt.Sprintf("%q", ph.contactString())+`)`)
	shot(t, b, "4-bla-seized")

	// A refused publication shows its code and reason, on the row and in
	// the detail panel's last events (opened with the keyboard).
	mallory := sipphone.NewPhone(t, "mallory", "example.com")
	outRegister(ctx, t, reg, mallory)
	waitJS(t, b, "mallory's refusal", rowJS(refusedAoR)+`?.querySelector('.pub').textContent.includes('403 Forbidden by policy')`)
	if err := chromedp.Do(b,
		setSearch("mallory"),
		chromedp.Focus("#list"),
		chromedp.KeyEvent(kb.ArrowDown),
		chromedp.KeyEvent(kb.Enter),
	); err != nil {
		t.Fatal(err)
	}
	waitJS(t, b, "the detail panel of mallory", `document.getElementById('detailbody').dataset.aor === `+fmt.Sprintf("%q", refusedAoR))
	waitJS(t, b, "the refusal in the last events", `[...document.querySelectorAll('#detailbody .events li[data-kind=publish]')].some(li => li.textContent.includes('403 Forbidden by policy'))`)
	waitJS(t, b, "the REGISTER in the last events", `[...document.querySelectorAll('#detailbody .events li[data-kind=register]')].some(li => li.textContent.includes('REGISTER'))`)
	shot(t, b, "5-refused-detail")
	if err := chromedp.Do(b,
		chromedp.KeyEvent(kb.Escape),
		setSearch(""),
	); err != nil {
		t.Fatal(err)
	}

	// A call in progress while the daemon restarts.
	bob.SetPolicy(sipphone.AutoAnswer)
	call2, err := alice.Invite(ctx, reg.Addr(), bob.AoR())
	if err != nil {
		t.Fatal(err)
	}
	if err := call2.WaitAnswer(ctx); err != nil {
		t.Fatalf("second call: %v", err)
	}
	waitJS(t, b, "bob talking again", rowJS("sip:bob@example.com")+`?.dataset.lamp === 'talking'`)

	// The daemon restarts: the page reconnects by itself (no reload: the
	// marker survives) and shows the stored registrations and the call's
	// lamps again.
	connects, err := chromedp.Run(b, chromedp.Evaluate[int](`window.__noReload = 1, window.boardStats.connects`))
	if err != nil {
		t.Fatal(err)
	}
	ps.stop()
	waitJS(t, b, "the page noticing the restart", `document.getElementById('conn').dataset.state !== 'live'`)
	startPuaside(t, cfg)
	waitJS(t, b, "the stream live again", `document.getElementById('conn').dataset.state === 'live' && window.boardStats.connects > `+fmt.Sprint(connects))
	waitJS(t, b, "no reload", `window.__noReload === 1`)
	waitJS(t, b, "a fresh snapshot after the restart", `window.boardStats.snapshots >= 2`)
	waitJS(t, b, "alice registered after the restart", rowJS("sip:alice@example.com")+`?.dataset.reg === 'registered'`)
	waitJS(t, b, "bob still talking after the restart", rowJS("sip:bob@example.com")+`?.dataset.lamp === 'talking'`)
	if err := call2.Bye(ctx); err != nil {
		t.Fatalf("bye after the restart: %v", err)
	}
	waitJS(t, b, "bob idle after the restart", rowJS("sip:bob@example.com")+`?.dataset.lamp === 'idle'`)
	outRegister(ctx, t, reg, bob)
	waitJS(t, b, "a live change after the restart", `[...document.querySelectorAll('.row')].length > 0 && `+rowJS("sip:bob@example.com")+`?.dataset.reg === 'registered'`)
	shot(t, b, "6-after-restart")
}

// setSearch types q into the board's search box.
func setSearch(q string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := chromedp.Evaluate[bool](fmt.Sprintf(`(s => (s.value = %q, s.dispatchEvent(new Event('input')), true))(document.getElementById('search'))`, q))(ctx, tg)
		return err
	})
}
