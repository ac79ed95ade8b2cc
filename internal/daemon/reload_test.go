package daemon

import (
	"reflect"
	"testing"

	"github.com/puaside/puaside/config"
)

// TestDiffKeysNamesRestartKeys: a reload names the changed keys by their
// YAML path and tells the reloadable ones from those needing a restart.
func TestDiffKeysNamesRestartKeys(t *testing.T) {
	a := config.Default()
	b := a
	b.LogLevel = "debug"
	b.PUA.Listen = []string{"udp:127.0.0.1:5999"}
	b.HTTP.Token = "x"
	b.Usrloc.PublishPatterns = []string{"*@example.com"}
	got := diffKeys(reflect.ValueOf(a), reflect.ValueOf(b), "")
	want := []string{"http.token", "log_level", "pua.listen", "usrloc.publish_patterns"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("diffKeys = %v, want %v", got, want)
	}
	var restart []string
	for _, k := range got {
		if !isReloadable(k) {
			restart = append(restart, k)
		}
	}
	if !reflect.DeepEqual(restart, []string{"pua.listen"}) {
		t.Fatalf("restart keys %v, want [pua.listen]", restart)
	}
}
