package dialoginfo

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/puaside/puaside/clock/clocktest"
	"github.com/puaside/puaside/dialogdoc"
	"github.com/puaside/puaside/internal/puatest"
	"github.com/puaside/puaside/internal/puatest/recorder"
)

// fakeClock is an injectable clock.
type fakeClock = clocktest.Fake

func newFakeClock() *fakeClock {
	return clocktest.New(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
}

// loadSIP reads a hand-written fixture as wire bytes (puatest.FixSIP).
func loadSIP(t testing.TB, path string) []byte {
	t.Helper()
	return puatest.FixSIP(puatest.ReadFile(t, path))
}

// validator checks documents against RFC 4235's required elements and
// values, and that versions grow per entity.
type validator struct {
	versions map[string]uint64
}

func newValidator() *validator { return &validator{versions: make(map[string]uint64)} }

var (
	validStates = map[string]bool{"trying": true, "proceeding": true, "early": true, "confirmed": true, "terminated": true}
	validEvents = map[string]bool{"cancelled": true, "rejected": true, "replaced": true, "local-bye": true, "remote-bye": true, "error": true, "timeout": true}
)

func attrOf(se xml.StartElement, name string) (string, bool) {
	for _, a := range se.Attr {
		if a.Name.Local == name && a.Name.Space == "" {
			return a.Value, true
		}
	}
	return "", false
}

// check validates one document published for presURI.
func (v *validator) check(presURI string, doc []byte) error {
	if !bytes.HasPrefix(doc, []byte(`<?xml version="1.0"?>`)) {
		return fmt.Errorf("missing XML declaration")
	}
	dec := xml.NewDecoder(bytes.NewReader(doc))
	var stack []string
	var dialogs int
	var dialogChildren []string
	var stateText string
	var stateEvent, stateCode string
	var inState bool
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("not well-formed XML: %w", err)
		}
		switch e := tok.(type) {
		case xml.StartElement:
			if e.Name.Space != dialogdoc.Namespace {
				return fmt.Errorf("element %s in namespace %q", e.Name.Local, e.Name.Space)
			}
			parent := ""
			if len(stack) > 0 {
				parent = stack[len(stack)-1]
			}
			switch e.Name.Local {
			case "dialog-info":
				if parent != "" {
					return fmt.Errorf("nested dialog-info")
				}
				ver, ok1 := attrOf(e, "version")
				st, ok2 := attrOf(e, "state")
				ent, ok3 := attrOf(e, "entity")
				if !ok1 || !ok2 || !ok3 {
					return fmt.Errorf("dialog-info lacks version/state/entity")
				}
				n, err := strconv.ParseUint(ver, 10, 64)
				if err != nil {
					return fmt.Errorf("version %q: %w", ver, err)
				}
				if st != "full" && st != "partial" {
					return fmt.Errorf("state %q", st)
				}
				if ent != presURI {
					return fmt.Errorf("entity %q published as %q", ent, presURI)
				}
				if last, ok := v.versions[ent]; ok && n <= last {
					return fmt.Errorf("version %d not above %d for %s", n, last, ent)
				}
				v.versions[ent] = n
			case "dialog":
				if parent != "dialog-info" {
					return fmt.Errorf("dialog under %q", parent)
				}
				dialogs++
				dialogChildren = nil
				if id, ok := attrOf(e, "id"); !ok || id == "" {
					return fmt.Errorf("dialog without id")
				}
				if d, ok := attrOf(e, "direction"); ok && d != "initiator" && d != "recipient" {
					return fmt.Errorf("direction %q", d)
				}
			case "state", "local", "remote", "duration", "replaces", "referred-by", "route-set":
				if parent != "dialog" {
					return fmt.Errorf("%s under %q", e.Name.Local, parent)
				}
				dialogChildren = append(dialogChildren, e.Name.Local)
				if e.Name.Local == "state" {
					inState, stateText = true, ""
					stateEvent, _ = attrOf(e, "event")
					stateCode, _ = attrOf(e, "code")
				}
			case "identity", "target":
				if parent != "local" && parent != "remote" {
					return fmt.Errorf("%s under %q", e.Name.Local, parent)
				}
				if e.Name.Local == "target" {
					if u, ok := attrOf(e, "uri"); !ok || u == "" {
						return fmt.Errorf("target without uri")
					}
				}
			case "param":
				if parent != "target" {
					return fmt.Errorf("param under %q", parent)
				}
				pn, ok1 := attrOf(e, "pname")
				pv, ok2 := attrOf(e, "pval")
				if !ok1 || !ok2 {
					return fmt.Errorf("param without pname/pval")
				}
				if pn == "+sip.rendering" && pv != "yes" && pv != "no" && pv != "unknown" {
					return fmt.Errorf("+sip.rendering %q", pv)
				}
			default:
				return fmt.Errorf("unexpected element %s", e.Name.Local)
			}
			stack = append(stack, e.Name.Local)
		case xml.CharData:
			if inState {
				stateText += string(e)
			}
		case xml.EndElement:
			name := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			switch name {
			case "state":
				inState = false
				if !validStates[stateText] {
					return fmt.Errorf("state token %q", stateText)
				}
				if stateEvent != "" && (stateText != "terminated" || !validEvents[stateEvent]) {
					return fmt.Errorf("state event %q with state %q", stateEvent, stateText)
				}
				if stateCode != "" {
					c, err := strconv.Atoi(stateCode)
					if err != nil || c < 100 || c > 699 {
						return fmt.Errorf("state code %q", stateCode)
					}
				}
			case "dialog":
				var nState, li, ri int
				li, ri = -1, -1
				for i, c := range dialogChildren {
					switch c {
					case "state":
						nState++
					case "local":
						li = i
					case "remote":
						ri = i
					}
				}
				if nState != 1 {
					return fmt.Errorf("dialog with %d state elements", nState)
				}
				if li >= 0 && ri >= 0 && li > ri {
					return fmt.Errorf("<remote> before <local>")
				}
			}
		}
	}
	if len(stack) != 0 {
		return fmt.Errorf("unclosed elements")
	}
	return nil
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// stuck counts the live publications that would keep a lamp lit: every
// one but the terminated documents left to lapse (published with a
// lifetime), which the engine ends without a removal.
func stuck(r *recorder.Recorder) int {
	n := 0
	for _, req := range r.Live() {
		if req.Lifetime <= 0 || !dialogdoc.AllTerminated(req.Body) {
			n++
		}
	}
	return n
}

// lapsing counts the live publications left to lapse.
func lapsing(r *recorder.Recorder) int {
	n := 0
	for _, req := range r.Live() {
		if req.Lifetime > 0 {
			n++
		}
	}
	return n
}
