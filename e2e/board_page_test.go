package e2e

import (
	"context"
	"fmt"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/puaside/puaside/board"
	"github.com/puaside/puaside/mgmt"
	"github.com/puaside/puaside/pua"
)

// pageLines is a fixed shared line for the board's page tests.
type pageLines struct{}

func (pageLines) LineAoRs() []string { return []string{"sip:reception@d0.example.com"} }
func (pageLines) Line(aor string) (board.Line, bool) {
	return board.Line{AoR: aor,
		Phones: []board.LinePhone{{Contact: "sip:reception@10.0.0.11", Subscribed: true}, {Contact: "sip:reception@10.0.0.12", Subscribed: true}},
		Appearance: []board.Appearance{{Index: "1", Contact: "sip:reception@10.0.0.11", State: "confirmed"},
			{Index: "2", Contact: "sip:reception@10.0.0.12", State: "confirmed", Held: true}}}, true
}

// fillBoard puts n AoRs on bd in ten domains, some ringing, talking, on
// hold, expired or refused.
func fillBoard(bd *board.Board, n int) func(int) string {
	aor := func(i int) string { return fmt.Sprintf("sip:user%05d@d%d.example.com", i, i%10) }
	dialog := func(a, state, dir string, held bool) []byte {
		local := ""
		if held {
			local = `<local><target uri="sip:x@10.0.0.1"><param pname="+sip.rendering" pval="no"/></target></local>`
		}
		return fmt.Appendf(nil, `<?xml version="1.0"?><dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="1" state="full" entity="%s"><dialog id="d" direction="%s"><state>%s</state>%s<remote><identity display="Front desk">sip:frontdesk@example.com</identity></remote></dialog></dialog-info>`, a, dir, state, local)
	}
	for i := range n {
		a := aor(i)
		bd.Contacts(a, []board.Contact{{URI: fmt.Sprintf("sip:u%d@10.0.%d.%d", i, i/250, i%250), UserAgent: "Yealink SIP-T46S 66.86.0.15", Expires: time.Now().Add(time.Hour)}})
		switch i % 11 {
		case 1:
			bd.Published(pua.PublishRequest{Key: pua.Key{PresURI: a, Event: "dialog"}, Body: dialog(a, "early", "recipient", false)})
		case 2:
			bd.Published(pua.PublishRequest{Key: pua.Key{PresURI: a, Event: "dialog"}, Body: dialog(a, "confirmed", "initiator", false)})
		case 3:
			bd.Published(pua.PublishRequest{Key: pua.Key{PresURI: a, Event: "dialog"}, Body: dialog(a, "confirmed", "recipient", true)})
		case 5:
			bd.PublishResult(pua.Key{PresURI: a, Event: "presence"}, "initial", pua.Result{Status: 403, Reason: "Forbidden"})
		case 7:
			bd.Contacts(a, nil)
		}
	}
	return aor
}

// setColourScheme emulates prefers-color-scheme.
func setColourScheme(scheme string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := cdp.Call(ctx, t, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
			Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: scheme}}})
		return err
	})
}

// TestBoardPageScale: with 10,000 AoRs the page renders only the rows in
// view (virtualised), the keyboard reaches the last AoR, the search finds
// one AoR among them, and the colours follow prefers-color-scheme (light
// and dark) while every state keeps its words.
func TestBoardPageScale(t *testing.T) {
	bd := board.New(board.Options{Lines: pageLines{}, ServerName: "sip:presence.example.com",
		Server: func(context.Context) error { return nil }})
	srv := httptest.NewServer(bd)
	defer srv.Close()
	defer bd.Close()
	run, cancel := context.WithCancel(context.Background())
	defer cancel()
	go bd.Run(run)
	aor := fillBoard(bd, 10000)

	b := newBrowser(t)
	if err := chromedp.Do(b, setColourScheme("light"), chromedp.Navigate(srv.URL+"/board")); err != nil {
		t.Fatal(err)
	}
	waitJS(t, b, "the snapshot shown", `document.getElementById('summary').textContent.startsWith('10000 AoRs shown')`)
	waitJS(t, b, "the shared line", `document.querySelectorAll('.linecard .appearance').length === 2`)
	n, err := chromedp.Run(b, chromedp.Evaluate[int](`document.querySelectorAll('.row:not([hidden])').length`))
	if err != nil || n == 0 || n > 100 {
		t.Fatalf("%d rows in the document for 10,000 AoRs (%v): not virtualised", n, err)
	}
	for _, w := range []string{"◔ ringing", "● talking", "‖ on hold", "✗ unregistered", "⚠ presence 403 Forbidden"} {
		waitJS(t, b, "the words "+w, fmt.Sprintf(`document.getElementById('list').innerText.includes(%q)`, w))
	}
	shot(t, b, "board-light")
	if bg, _ := chromedp.Run(b, chromedp.Evaluate[string](`getComputedStyle(document.body).backgroundColor`)); bg != "rgb(255, 255, 255)" {
		t.Errorf("light background %s", bg)
	}
	if err := chromedp.Do(b, setColourScheme("dark")); err != nil {
		t.Fatal(err)
	}
	waitJS(t, b, "the dark colours", `getComputedStyle(document.body).backgroundColor === 'rgb(21, 23, 27)'`)
	shot(t, b, "board-dark")

	last := aor(9999) // d9 sorts last
	if err := chromedp.Do(b, chromedp.Focus("#list"), chromedp.KeyEvent(kb.End)); err != nil {
		t.Fatal(err)
	}
	waitJS(t, b, "End selecting the last AoR", fmt.Sprintf(`document.querySelector('.row[aria-selected=true]')?.dataset.aor === %q`, last))
	if err := chromedp.Do(b, setSearch("user04242")); err != nil {
		t.Fatal(err)
	}
	waitJS(t, b, "the search finding one AoR", `document.getElementById('summary').textContent.startsWith('1 AoRs shown') && document.querySelectorAll('.row[data-aor]:not([hidden])').length === 1`)
	waitJS(t, b, "the AoR found", rowJS(aor(4242))+` !== null`)

	// The connection drops: the page reconnects with Last-Event-ID and
	// gets only what changed meanwhile (no second snapshot).
	srv.CloseClientConnections()
	bd.Watchers(aor(4242), []board.Watcher{{URI: "sip:op@example.com", Event: "dialog", Status: "active"}})
	waitJS(t, b, "the page reconnected", `window.boardStats.connects === 2 && document.getElementById('conn').dataset.state === 'live'`)
	waitJS(t, b, "the change made while disconnected", rowJS(aor(4242))+`?.querySelector('.ua').textContent.includes('1 watcher')`)
	if n, _ := chromedp.Run(b, chromedp.Evaluate[int](`window.boardStats.snapshots`)); n != 1 {
		t.Errorf("%d snapshots: the reconnection did not resume from its version", n)
	}
}

// TestBoardPageToken: behind the management server with http.token set,
// the page loads without the token, asks for it, and goes live once it is
// given; a token in the URL fragment is taken and removed from the URL.
func TestBoardPageToken(t *testing.T) {
	bd := board.New(board.Options{})
	defer bd.Close()
	bd.Contacts("sip:alice@example.com", []board.Contact{{URI: "sip:alice@10.0.0.1"}})
	cfg := mgmt.DefaultConfig()
	cfg.HTTPListen = "127.0.0.1:0"
	cfg.Token = "s3cret"
	api, err := mgmt.New(cfg, mgmt.Deps{Board: bd}, mgmt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := api.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = api.Stop(ctx)
	})
	b := newBrowser(t)
	if err := chromedp.Do(b, chromedp.Navigate("http://"+api.Addr()+"/board")); err != nil {
		t.Fatal(err)
	}
	waitJS(t, b, "the token asked for", `document.getElementById('conn').dataset.state === 'auth' && !document.getElementById('tokenform').hidden`)
	if err := chromedp.Do(b, chromedp.SendKeys("#token", "s3cret"), chromedp.KeyEvent(kb.Enter)); err != nil {
		t.Fatal(err)
	}
	waitJS(t, b, "live with the token", `document.getElementById('conn').dataset.state === 'live' && `+rowJS("sip:alice@example.com")+` !== null`)

	b2 := newBrowser(t)
	if err := chromedp.Do(b2, chromedp.Navigate("http://"+api.Addr()+"/board#token=s3cret")); err != nil {
		t.Fatal(err)
	}
	waitJS(t, b2, "live with the token of the URL", `document.getElementById('conn').dataset.state === 'live' && location.hash === ''`)
}
