package bla

import "testing"

func TestOwnDialog(t *testing.T) {
	a, b := "sip:100@10.0.0.1:5060", "sip:100@10.0.0.2:5060"
	id := qualifyID(ContactID(a), "d1")
	if !OwnDialog(a, id) {
		t.Fatalf("%s is not %s's own", id, a)
	}
	if !OwnDialog(`"Phone" <`+a+`>`, id) {
		t.Fatal("a name-addr contact is not matched by its addr-spec")
	}
	if OwnDialog(b, id) {
		t.Fatalf("%s counted as %s's", id, b)
	}
	if OwnDialog(a, "d1") {
		t.Fatal("an unqualified id counted as the phone's")
	}
}
