package pua

import (
	"strings"
	"testing"
)

func TestParseSubscriptionState(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    SubState
		wantErr bool
	}{
		{"active;expires=3600", SubState{State: "active", Expires: 3600, RetryAfter: -1}, false},
		{"Active ; Expires = 60", SubState{State: "active", Expires: 60, RetryAfter: -1}, false},
		{"pending", SubState{State: "pending", Expires: -1, RetryAfter: -1}, false},
		{"terminated;reason=timeout", SubState{State: "terminated", Expires: -1, Reason: "timeout", RetryAfter: -1}, false},
		{"terminated;reason=probation;retry-after=30", SubState{State: "terminated", Expires: -1, Reason: "probation", RetryAfter: 30}, false},
		{"active;expires=10;x-foo=bar;", SubState{State: "active", Expires: 10, RetryAfter: -1}, false},
		{"", SubState{}, true},
		{"   ", SubState{}, true},
		{"bogus", SubState{}, true},
		{";expires=3", SubState{}, true},
		{"active;expires=", SubState{}, true},
		{"active;expires=-1", SubState{}, true},
		{"active;expires=99999999999", SubState{}, true},
		{"terminated;reason=", SubState{}, true},
		{"active;" + strings.Repeat("x", 2000), SubState{}, true},
	} {
		got, err := ParseSubscriptionState(tc.in)
		if (err != nil) != tc.wantErr {
			t.Errorf("%q: error %v, want error %v", tc.in, err, tc.wantErr)
			continue
		}
		if !tc.wantErr && got != tc.want {
			t.Errorf("%q: got %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

func FuzzParseSubscriptionState(f *testing.F) {
	for _, s := range []string{"active;expires=3600", "terminated;reason=noresource", "pending", "", "a;b=c;;=",
		"terminated;reason=probation;retry-after=30", "active;expires=\"5\""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		ss, err := ParseSubscriptionState(in)
		if err != nil {
			return
		}
		switch ss.State {
		case "active", "pending", "terminated":
		default:
			t.Fatalf("%q: accepted state %q", in, ss.State)
		}
		if ss.Expires < -1 || ss.RetryAfter < -1 {
			t.Fatalf("%q: negative parameter %+v", in, ss)
		}
	})
}
