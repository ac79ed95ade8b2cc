// Package buildinfo says which puaside this is: the version and VCS revision
// stamped at link time, or, when not stamped, what the Go toolchain recorded
// in the binary (module version, vcs.revision).
//
// Stamp a build with
//
//	go build -ldflags "-X github.com/puaside/puaside/internal/buildinfo.version=1.2.3 \
//	  -X github.com/puaside/puaside/internal/buildinfo.revision=$(git rev-parse HEAD)" ./cmd/puaside
//
// Place in the flow: outside it, below metrics (the build info gauge) and
// the commands (version output).
package buildinfo

import (
	"runtime"
	"runtime/debug"
)

// Set by the linker (-ldflags -X); empty when the build was not stamped.
var (
	version  string
	revision string
)

// Info describes the running binary.
type Info struct {
	// Version is the stamped version, else the module version recorded by
	// `go install module@version`, else "dev".
	Version string
	// Revision is the VCS commit (with "-dirty" for a modified work tree),
	// "unknown" when neither stamped nor recorded.
	Revision string
	// GoVersion is the Go toolchain that built the binary.
	GoVersion string
}

// Get returns the running binary's build information.
func Get() Info {
	bi, _ := debug.ReadBuildInfo()
	return resolve(version, revision, bi)
}

// resolve combines the stamped values with the recorded build information
// (bi may be nil).
func resolve(stampedVersion, stampedRevision string, bi *debug.BuildInfo) Info {
	info := Info{Version: stampedVersion, Revision: stampedRevision, GoVersion: runtime.Version()}
	if bi != nil {
		if bi.GoVersion != "" {
			info.GoVersion = bi.GoVersion
		}
		if info.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			info.Version = bi.Main.Version
		}
		if info.Revision == "" {
			var rev string
			modified := false
			for _, s := range bi.Settings {
				switch s.Key {
				case "vcs.revision":
					rev = s.Value
				case "vcs.modified":
					modified = s.Value == "true"
				}
			}
			if rev != "" && modified {
				rev += "-dirty"
			}
			info.Revision = rev
		}
	}
	if info.Version == "" {
		info.Version = "dev"
	}
	if info.Revision == "" {
		info.Revision = "unknown"
	}
	return info
}

// String is the one-line form `puaside version` prints:
// "1.2.3 (revision abc123, go1.26.8)".
func (i Info) String() string {
	return i.Version + " (revision " + i.Revision + ", " + i.GoVersion + ")"
}
