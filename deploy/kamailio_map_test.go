package deploy_test

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// kamailioExports are the modparams, script functions and RPC commands of
// Kamailio's pua modules (their param_export_t, cmd_export_t and
// rpc_export_t in src/modules/pua*/, Kamailio 5.6 to 6.x), without the
// C APIs other modules bind (bind_pua, bind_pua_usrloc, bind_libxml_api).
func kamailioExports() map[string][]string {
	return map[string][]string{
		"pua": {"hash_size", "db_url", "db_table", "min_expires", "default_expires", "update_period",
			"outbound_proxy", "dlginfo_increase_version", "reginfo_increase_version", "check_remote_contact",
			"db_mode", "fetch_rows", "db_table_lock_write", "pua_update_contact()", "pua.cleanup"},
		"pua_usrloc": {"default_domain", "entity_prefix", "branch_flag", "pua_set_publish()"},
		"pua_dialoginfo": {"use_uuid", "include_callid", "include_localremote", "include_tags",
			"override_lifetime", "caller_confirmed", "include_req_uri", "send_publish_flag", "use_pubruri_avps",
			"refresh_pubruri_avps_flag", "pubruri_caller_avp", "pubruri_callee_avp", "pubruri_caller_dlg_var",
			"pubruri_callee_dlg_var", "local_identity_dlg_var", "callee_trying", "disable_caller_publish_flag",
			"disable_callee_publish_flag", "caller_entity_when_publish_disabled",
			"callee_entity_when_publish_disabled", "publish_dialog_req_within", "attribute_display"},
		"pua_bla": {"default_domain", "header_name", "outbound_proxy", "server_address",
			"bla_set_flag()", "bla_handle_notify()"},
		"pua_rpc": {"pua.publish", "pua.send_publish", "pua.subscribe"},
	}
}

// TestGuideMapsEveryKamailioPuaExport: section 11.1 of the operator guide
// has a row for every parameter, function and RPC command of pua,
// pua_usrloc, pua_dialoginfo, pua_bla and pua_rpc, each with its puaside
// equivalent or the reason there is none.
func TestGuideMapsEveryKamailioPuaExport(t *testing.T) {
	md := readFile(t, filepath.Join(repoRoot(t), "docs", "operator-guide.md"))
	_, sec, ok := strings.Cut(md, "\n### 11.1 ")
	if !ok {
		t.Fatal("the guide has no section 11.1")
	}
	sec, _, _ = strings.Cut(sec, "\n## ")
	module := regexp.MustCompile(`pua(_[a-z]+)?`)
	code := regexp.MustCompile("`([^`]+)`")
	mapped := map[string]map[string]bool{}
	for _, l := range strings.Split(sec, "\n") {
		cells := strings.Split(l, "|")
		if len(cells) != 5 || strings.HasPrefix(strings.TrimSpace(cells[1]), "---") {
			continue
		}
		if strings.TrimSpace(cells[3]) == "" {
			t.Errorf("row %q has no puaside equivalent", l)
		}
		for _, m := range module.FindAllString(cells[1], -1) {
			if mapped[m] == nil {
				mapped[m] = map[string]bool{}
			}
			for _, c := range code.FindAllStringSubmatch(cells[2], -1) {
				name := strings.TrimPrefix(c[1], "kamcmd ")
				mapped[m][name] = true
			}
		}
	}
	for m, names := range kamailioExports() {
		for _, n := range names {
			if !mapped[m][n] {
				t.Errorf("section 11.1 has no row for %s's %s", m, n)
			}
		}
	}
}
