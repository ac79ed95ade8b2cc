package usrloc

import "testing"

// TestBuildPIDFBytes: the documents usrloc publishes keep their exact
// bytes (the presence server compares bodies to detect changes).
func TestBuildPIDFBytes(t *testing.T) {
	for _, tc := range []struct {
		entity   string
		contacts []Binding
		want     string
	}{
		{"sip:a@example.com", nil, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"sip:a@example.com\">\n  <tuple id=\"tf48153a1ea18ca5f\">\n    <status>\n      <basic>closed</basic>\n    </status>\n  </tuple>\n</presence>\n"},
		{"sip:a&b@example.com", []Binding{{URI: "sip:a@10.0.0.1;x=<y>", Q: 0.5}, {URI: "sip:a@10.0.0.2", Q: -1}},
			"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"sip:a&amp;b@example.com\">\n  <tuple id=\"t80869ea31359e81f\">\n    <status>\n      <basic>open</basic>\n    </status>\n    <contact>sip:a@10.0.0.2</contact>\n  </tuple>\n  <tuple id=\"td5070fc63dd503bf\">\n    <status>\n      <basic>open</basic>\n    </status>\n    <contact priority=\"0.5\">sip:a@10.0.0.1;x=&lt;y&gt;</contact>\n  </tuple>\n</presence>\n"},
	} {
		if got := string(BuildPIDF(tc.entity, tc.contacts)); got != tc.want {
			t.Errorf("BuildPIDF(%q) =\n%s\nwant\n%s", tc.entity, got, tc.want)
		}
	}
}
