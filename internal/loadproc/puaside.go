package loadproc

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/puaside/puaside/config"
)

// StartPuaside writes cfg as the configuration file dir/puaside.yaml (as
// `puaside config` would print it: every key) and runs `bin run -config`
// on it, in its own process group, until its management server
// (cfg.HTTP.HTTPListen, which must be a fixed loopback host:port, e.g. from
// FreePort) answers /readyz with 200, at most limit. The environment is
// this process's without PUASIDE_API, PUASIDE_TOKEN and PUASIDE_CONFIG.
func StartPuaside(ctx context.Context, bin string, cfg config.Config, dir string, logw io.Writer, limit time.Duration) (*Proc, error) {
	yml, err := cfg.YAML()
	if err != nil {
		return nil, fmt.Errorf("loadproc: %w", err)
	}
	path := filepath.Join(dir, "puaside.yaml")
	if err := os.WriteFile(path, yml, 0o600); err != nil {
		return nil, fmt.Errorf("loadproc: configuration file: %w", err)
	}
	env := append(os.Environ(), "PUASIDE_API=", "PUASIDE_TOKEN=", "PUASIDE_CONFIG=")
	return Start(ctx, bin, []string{"run", "-config", path}, env, logw, "http://"+cfg.HTTP.HTTPListen+"/readyz", limit)
}
