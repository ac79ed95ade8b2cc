package buildinfo

import (
	"runtime/debug"
	"testing"
)

func TestResolve(t *testing.T) {
	vcs := &debug.BuildInfo{GoVersion: "go1.99", Main: debug.Module{Version: "(devel)"},
		Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "abc123"}, {Key: "vcs.modified", Value: "true"}}}
	installed := &debug.BuildInfo{GoVersion: "go1.99", Main: debug.Module{Version: "v1.4.0"}}
	for _, c := range []struct {
		name          string
		ver, rev      string
		bi            *debug.BuildInfo
		wantV, wantR  string
		wantGoVersion string
	}{
		{"stamped wins", "1.2.3", "def456", vcs, "1.2.3", "def456", "go1.99"},
		{"vcs revision, dirty", "", "", vcs, "dev", "abc123-dirty", "go1.99"},
		{"go install module@version", "", "", installed, "v1.4.0", "unknown", "go1.99"},
		{"nothing recorded", "", "", nil, "dev", "unknown", ""},
	} {
		got := resolve(c.ver, c.rev, c.bi)
		if got.Version != c.wantV || got.Revision != c.wantR {
			t.Errorf("%s: got %+v, want version %q revision %q", c.name, got, c.wantV, c.wantR)
		}
		if c.wantGoVersion != "" && got.GoVersion != c.wantGoVersion {
			t.Errorf("%s: go version %q, want %q", c.name, got.GoVersion, c.wantGoVersion)
		}
		if got.GoVersion == "" {
			t.Errorf("%s: empty go version", c.name)
		}
	}
}
