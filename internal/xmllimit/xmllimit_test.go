package xmllimit

import (
	"errors"
	"io"
	"strings"
	"testing"
)

var errEmpty, errBig = errors.New("empty"), errors.New("too large")

func TestCheckSize(t *testing.T) {
	for _, tc := range []struct {
		name    string
		body    string
		maxSize int
		want    error
	}{
		{"empty", "", 10, errEmpty},
		{"white space", " \r\n\t", 10, errEmpty},
		{"at the cap", "<a>12</a>", 9, nil},
		{"over the cap", "<a>123</a>", 9, errBig},
		{"default cap", "<a/>" + strings.Repeat(" ", DefaultMaxSize), 0, errBig},
		{"under the default cap", "<a/>", 0, nil},
	} {
		err := CheckSize([]byte(tc.body), tc.maxSize, errEmpty, errBig)
		if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
			t.Errorf("%s: err %v, want %v", tc.name, err, tc.want)
		}
	}
}

func TestNewDecoderExpandsNoEntity(t *testing.T) {
	body := `<!DOCTYPE a [<!ENTITY x "boom">]><a>&x;</a>`
	dec := NewDecoder([]byte(body), true)
	for {
		_, err := dec.Token()
		if err == io.EOF {
			t.Fatal("a user-defined entity was accepted")
		}
		if err != nil {
			return
		}
	}
}

func TestNewDecoderStrict(t *testing.T) {
	for _, strict := range []bool{true, false} {
		if got := NewDecoder([]byte("<a/>"), strict).Strict; got != strict {
			t.Errorf("Strict = %v, want %v", got, strict)
		}
	}
}
