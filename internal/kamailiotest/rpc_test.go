package kamailiotest

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestRegistrarConfigChecks runs `kamailio -c` on registrar.cfg in every
// mirroring variant, with and without the RPC socket.
func TestRegistrarConfigChecks(t *testing.T) {
	bin, err := findBinary("")
	if err != nil {
		t.Fatal(err)
	}
	cfg := ConfigPath(t, "registrar.cfg")
	for _, variant := range []string{"WITH_REPLICATE", "WITH_SIPTRACE", "WITH_HEP"} {
		for _, rpc := range []bool{false, true} {
			args := []string{"-c", "-f", cfg, "-A", variant}
			if rpc {
				args = append(args, "-A", "WITH_RPC")
			}
			out, err := exec.Command(bin, args...).CombinedOutput()
			if err != nil {
				t.Errorf("kamailio %s: %v\n%s", strings.Join(args, " "), err, out)
			}
		}
	}
}

// rpcPost posts a JSON-RPC request from the local address src (nil: any).
func rpcPost(ctx context.Context, url string, src net.Addr) (int, string, error) {
	d := &net.Dialer{LocalAddr: src, Timeout: 2 * time.Second}
	hc := &http.Client{Transport: &http.Transport{DialContext: d.DialContext}, Timeout: 5 * time.Second}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url,
		strings.NewReader(`{"jsonrpc":"2.0","method":"dlg.list","id":1}`))
	if err != nil {
		return 0, "", err
	}
	res, err := hc.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(res.Body, 1<<16))
	return res.StatusCode, string(b), nil
}

// TestRegistrarRPC: with WITH_RPC the registrar answers JSON-RPC on its RPC
// port from 127.0.0.1 only, and refuses HTTP on its SIP port.
func TestRegistrarRPC(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rpcPort, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	reg := startRegistrar(t, map[string]string{"WITH_REPLICATE": "", "WITH_RPC": "", "RPC_PORT": strconv.Itoa(rpcPort)})
	rpcURL := fmt.Sprintf("http://127.0.0.1:%d/RPC", rpcPort)

	code, body, err := rpcPost(ctx, rpcURL, nil)
	if err != nil || code != 200 || !strings.Contains(body, `"result":[]`) {
		t.Fatalf("dlg.list from loopback: %d %q %v", code, body, err)
	}
	// Another loopback address is not 127.0.0.1: refused.
	code, body, err = rpcPost(ctx, rpcURL, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)})
	if err != nil || code != 403 {
		t.Errorf("dlg.list from 127.0.0.2: %d %q %v, want 403", code, body, err)
	}
	// HTTP on the SIP port is refused.
	code, body, err = rpcPost(ctx, "http://"+reg.Addr()+"/RPC", nil)
	if err != nil || code != 403 {
		t.Errorf("dlg.list on the SIP port: %d %q %v, want 403", code, body, err)
	}
	code, _, err = rpcPost(ctx, fmt.Sprintf("http://127.0.0.1:%d/other", rpcPort), nil)
	if err != nil || code != 404 {
		t.Errorf("another path: %d %v, want 404", code, err)
	}
}
