package deploy_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestRegistrarDefinesCombine runs `kamailio -c` on registrar.cfg with every
// combination of its mirroring defines, with and without WITH_RPC and
// WITH_PA (forwarding SUBSCRIBE/PUBLISH to the embedded presence server): the
// defines are independent switches, so any set of them must parse (with
// WITH_SIPTRACE and WITH_HEP both set, the copies are HEPv3). Kamailio's own
// pua_usrloc (WITH_PUA_USRLOC, on SQLite or with WITH_MYSQL) parses alone
// and beside each mirroring define. WITH_WSS parses with WITH_TLS and
// WITH_PA, with and without WITH_RPC. WITH_PATH (phones behind an edge
// proxy) parses alone, with each mirroring define, with WITH_TLS and with
// WITH_OUTBOUND (RFC 5626).
func TestRegistrarDefinesCombine(t *testing.T) {
	bin, err := exec.LookPath("kamailio")
	if err != nil {
		t.Fatalf("kamailio is needed (scripts/test.sh installs it): %v", err)
	}
	cfg := filepath.Join(repoRoot(t), "deploy", "kamailio", "registrar.cfg")
	mirrors := []string{"WITH_REPLICATE", "WITH_SIPTRACE", "WITH_HEP"}
	for set := 1; set < 1<<len(mirrors); set++ {
		for opt := 0; opt < 4; opt++ {
			rpc, withPA := opt&1 != 0, opt&2 != 0
			args := []string{"-c", "-f", cfg}
			if withPA {
				args = append(args, "-A", "WITH_PA")
			}
			for i, m := range mirrors {
				if set&(1<<i) != 0 {
					args = append(args, "-A", m)
				}
			}
			if rpc {
				args = append(args, "-A", "WITH_RPC")
			}
			if out, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
				t.Errorf("kamailio %s: %v\n%s", strings.Join(args, " "), err, out)
			}
		}
	}
	// Browser phones: WebSocket on the TLS port, in front of pa, with and
	// without the RPC socket (both use xhttp).
	for _, extra := range [][]string{nil, {"-A", "WITH_RPC"}} {
		args := append([]string{"-c", "-f", cfg, "-A", "WITH_TLS", "-A", "WITH_PA", "-A", "WITH_WSS", "-A", "WITH_REPLICATE"}, extra...)
		if out, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
			t.Errorf("kamailio %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	// Several instances' presence servers as a dispatcher set, beside the
	// fan-out of the mirrored traffic and the RPC socket.
	list := filepath.Join(t.TempDir(), "pa.list")
	if err := os.WriteFile(list, []byte("1 sip:127.0.0.1:5065\n1 sip:127.0.0.2:5065\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, extra := range [][]string{{"-A", "WITH_FANOUT"}, {"-A", "WITH_FANOUT", "-A", "WITH_RPC", "-A", "WITH_SIPTRACE"}} {
		args := append([]string{"-c", "-f", cfg, "-A", "WITH_PA", "-A", "WITH_PA_SET", "-A", `PUASIDE_PA_LIST="` + list + `"`}, extra...)
		if out, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
			t.Errorf("kamailio %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	// Phones behind an edge proxy (Path), alone, with each mirroring define
	// and beside the TLS flows.
	for _, extra := range [][]string{nil, {"-A", "WITH_REPLICATE"}, {"-A", "WITH_SIPTRACE"}, {"-A", "WITH_HEP"}, {"-A", "WITH_TLS"}, {"-A", "WITH_TLS", "-A", "WITH_PA", "-A", "WITH_WSS", "-A", "WITH_RPC"}, {"-A", "WITH_OUTBOUND"}, {"-A", "WITH_OUTBOUND", "-A", "WITH_TLS"}} {
		args := append([]string{"-c", "-f", cfg, "-A", "WITH_PATH"}, extra...)
		if out, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
			t.Errorf("kamailio %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	for _, extra := range [][]string{nil, {"-A", "WITH_MYSQL"}, {"-A", "WITH_REPLICATE"}, {"-A", "WITH_SIPTRACE"}, {"-A", "WITH_HEP"}} {
		args := append([]string{"-c", "-f", cfg, "-A", "WITH_PUA_USRLOC"}, extra...)
		if out, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
			t.Errorf("kamailio %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// TestEdgeConfigChecks runs `kamailio -c` on edge.cfg, the edge proxy in
// front of the registrar (Path), with and without its TLS listener and
// RFC 5626 outbound (module outbound, package kamailio-outbound-modules).
func TestEdgeConfigChecks(t *testing.T) {
	bin, err := exec.LookPath("kamailio")
	if err != nil {
		t.Fatalf("kamailio is needed (scripts/test.sh installs it): %v", err)
	}
	cfg := filepath.Join(repoRoot(t), "deploy", "kamailio", "edge.cfg")
	for _, extra := range [][]string{nil, {"-A", "WITH_TLS"}, {"-A", "WITH_OUTBOUND"}, {"-A", "WITH_OUTBOUND", "-A", "WITH_TLS"}} {
		args := append([]string{"-c", "-f", cfg, "-A", `REGISTRAR_URI="sip:127.0.0.1:5070"`}, extra...)
		if out, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
			t.Errorf("kamailio %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}
