package e2e

import (
	"context"
	"fmt"
	"net/http/httptest"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/performance"
	"github.com/chromedp/chromedp"

	"github.com/puaside/puaside/board"
	"github.com/puaside/puaside/pua"
)

// Load of the board benchmark: AoRs shown and changes per second.
const (
	boardBenchAoRs    = 10000
	boardBenchChanges = 500
	boardBenchPeriod  = 10 * time.Second
)

// BenchmarkBoardLoad opens the lamp board in headless chromium with 10,000
// AoRs and changes 500 of them a second (registrations, lamps ringing and
// talking, refusals) for ten seconds. It reports the page's frame time
// (requestAnimationFrame intervals; the main thread's busy share from the
// Performance domain's TaskDuration) and the bytes per second of the event
// stream the page read.
func BenchmarkBoardLoad(b *testing.B) {
	for b.Loop() {
		benchBoardOnce(b)
	}
}

func benchBoardOnce(b *testing.B) {
	bd := board.New(board.Options{})
	srv := httptest.NewServer(bd)
	defer srv.Close()
	defer bd.Close()
	aor := fillBoard(bd, boardBenchAoRs)
	ctx := newBrowser(b)
	if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/board")); err != nil {
		b.Fatal(err)
	}
	deadline := time.Now().Add(waitLimit)
	for {
		n, _ := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('.row[data-aor]').length`))
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			b.Fatal("the board never showed a row")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := chromedp.Run(ctx, chromedp.Func(func(c context.Context, t *chromedp.Target) error {
		_, err := cdp.Call(c, t, performance.Enable, performance.EnableParams{})
		return err
	})); err != nil {
		b.Fatal(err)
	}
	taskDuration := func() float64 {
		res, err := chromedp.Run(ctx, chromedp.Action[performance.GetMetricsResult](func(c context.Context, t *chromedp.Target) (performance.GetMetricsResult, error) {
			return cdp.Call(c, t, performance.GetMetrics, cdp.Empty{})
		}))
		if err != nil {
			b.Fatal(err)
		}
		for _, m := range res.Metrics {
			if m.Name == "TaskDuration" {
				return m.Value
			}
		}
		b.Fatal("no TaskDuration metric")
		return 0
	}
	// Frame intervals measured in the page.
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`(() => { window.__frames = []; let last = performance.now();
		const f = (t) => { window.__frames.push(t - last); last = t; requestAnimationFrame(f); }; requestAnimationFrame(f); return true; })()`)); err != nil {
		b.Fatal(err)
	}
	bytes0, _ := chromedp.Run(ctx, chromedp.Evaluate[float64](`window.boardStats.bytes`))
	task0 := taskDuration()
	start := time.Now()
	var changes atomic.Int64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(time.Second / 50)
		defer tick.Stop()
		lamps := []string{"early", "confirmed", "terminated"}
		for i := 0; ; {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			for range boardBenchChanges / 50 {
				a := aor((i * 7919) % boardBenchAoRs)
				switch i % 4 {
				case 0, 1:
					body := fmt.Sprintf(`<?xml version="1.0"?><dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="%d" state="full" entity="%s"><dialog id="d" direction="recipient"><state>%s</state><remote><identity>sip:caller@example.com</identity></remote></dialog></dialog-info>`, i, a, lamps[i%3])
					bd.Published(pua.PublishRequest{Key: pua.Key{PresURI: a, Event: "dialog"}, Body: []byte(body)})
				case 2:
					bd.Contacts(a, []board.Contact{{URI: fmt.Sprintf("sip:u@10.1.0.%d", i%250), UserAgent: "Polycom", Expires: time.Now().Add(time.Hour)}})
				case 3:
					bd.PublishResult(pua.Key{PresURI: a, Event: "presence"}, "refresh", pua.Result{Status: 403 + (i%2)*-203, Reason: "Forbidden"})
				}
				i++
				changes.Add(1)
			}
		}
	}()
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		<-done
	}()
	time.Sleep(boardBenchPeriod)
	elapsed := time.Since(start).Seconds()
	task1 := taskDuration()
	bytes1, _ := chromedp.Run(ctx, chromedp.Evaluate[float64](`window.boardStats.bytes`))
	frames, err := chromedp.Run(ctx, chromedp.Evaluate[[]float64](`window.__frames`))
	if err != nil || len(frames) < 2 {
		b.Fatalf("frames %v: %v", frames, err)
	}
	var sum, worst float64
	for _, f := range frames[1:] {
		sum += f
		worst = max(worst, f)
	}
	b.ReportMetric(sum/float64(len(frames)-1), "ms/frame")
	b.ReportMetric(worst, "max-ms/frame")
	b.ReportMetric((task1-task0)/elapsed*100, "%main-thread")
	b.ReportMetric((bytes1-bytes0)/elapsed, "SSE-B/s")
	b.ReportMetric(float64(changes.Load())/elapsed, "changes/s")

	// Latency of one change to the page, under the same load: the time
	// from the change to its arrival in the page (one clock, loopback).
	probe := "sip:probe@example.com"
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`(window.boardStats.watch = "a:`+probe+`", true)`)); err != nil {
		b.Fatal(err)
	}
	var lat []float64
	for n := range 20 {
		t0 := time.Now().UnixMilli()
		marker := fmt.Sprintf("sip:probe@10.9.9.%d", n)
		bd.Contacts(probe, []board.Contact{{URI: marker}})
		deadline := time.Now().Add(waitLimit)
		for {
			at, _ := chromedp.Run(ctx, chromedp.Evaluate[float64](fmt.Sprintf(`(d => d && d.contacts[0].uri === %q ? window.boardStats.watchAt : 0)(window.boardStats.watchDoc)`, marker)))
			if at > 0 {
				lat = append(lat, at-float64(t0))
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("probe %d never reached the page", n)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	slices.Sort(lat)
	b.ReportMetric(lat[len(lat)/2], "p50-ms/delta")
	b.ReportMetric(lat[len(lat)-1], "max-ms/delta")
}
