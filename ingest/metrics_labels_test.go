package ingest

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/puaside/puaside/metrics"
)

// TestDropReasonsPrecreated keeps the metrics package's pre-created label
// values in step with ingest's: every input, kind, result and drop reason
// exists at zero before the first message.
func TestDropReasonsPrecreated(t *testing.T) {
	m := metrics.New()
	inputs := []string{InputReplicate, InputTrace, InputHEP, InputJSON}
	kinds := []string{kindRegister, kindRegisterReply, kindCall, kindEvent, kindOther}
	results := []string{resultAccepted, resultDuplicate, resultIgnored, resultError}
	reasons := []string{reasonUntrusted, reasonOversize, reasonParse, reasonHEPDecode, reasonHEPAuth,
		reasonQueueFull, reasonStopped, reasonFraming, reasonTooManyConn, reasonTLSHandshake,
		reasonURITooLong, reasonCallIDTooLong, reasonTagTooLong, reasonHeaderTooLong}
	n, err := testutil.GatherAndCount(m.Registry(), "puaside_ingest_messages_total")
	if err != nil || n != len(inputs)*len(kinds)*len(results) {
		t.Errorf("puaside_ingest_messages_total: %d series at start (%v), want %d", n, err, len(inputs)*len(kinds)*len(results))
	}
	n, err = testutil.GatherAndCount(m.Registry(), "puaside_ingest_dropped_total")
	if err != nil || n != len(inputs)*len(reasons) {
		t.Errorf("puaside_ingest_dropped_total: %d series at start (%v), want %d", n, err, len(inputs)*len(reasons))
	}
	// Counting one of each must not add series: they all existed.
	for _, in := range inputs {
		for _, k := range kinds {
			for _, r := range results {
				m.Ingest(in, k, r)
			}
		}
		for _, r := range reasons {
			m.Drop(in, r)
		}
	}
	if n, _ := testutil.GatherAndCount(m.Registry(), "puaside_ingest_messages_total"); n != len(inputs)*len(kinds)*len(results) {
		t.Errorf("a label value of ingest is not pre-created: %d series after one of each", n)
	}
	if n, _ := testutil.GatherAndCount(m.Registry(), "puaside_ingest_dropped_total"); n != len(inputs)*len(reasons) {
		t.Errorf("a drop reason of ingest is not pre-created: %d series after one of each", n)
	}
}
