// Package xmllimit holds the safety limits shared by the XML codecs
// (dialogdoc, pidf): the size cap of a document, the nesting bound and the
// one way to read XML, which never defines or expands an entity. It sits
// below the codecs, at the bottom of the flow.
package xmllimit

import (
	"bytes"
	"encoding/xml"
	"fmt"
)

// DefaultMaxSize is the size cap of a parsed document unless the caller
// gives another.
const DefaultMaxSize = 64 << 10

// MaxDepth bounds element nesting.
const MaxDepth = 32

// CheckSize returns errEmpty for a body of only white space and errTooLarge,
// wrapped with the sizes, for one over maxSize bytes (0 or less:
// DefaultMaxSize).
func CheckSize(body []byte, maxSize int, errEmpty, errTooLarge error) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return errEmpty
	}
	if maxSize <= 0 {
		maxSize = DefaultMaxSize
	}
	if len(body) > maxSize {
		return fmt.Errorf("%w: %d bytes, limit %d", errTooLarge, len(body), maxSize)
	}
	return nil
}

// NewDecoder is the XML reader of the codecs. Go's decoder never expands
// external entities and knows only the five predefined ones; CharsetReader
// stays nil, so a non-UTF-8 encoding declaration is an error. strict is
// false only where a lenient peer's reading must be matched.
func NewDecoder(body []byte, strict bool) *xml.Decoder {
	dec := xml.NewDecoder(bytes.NewReader(body))
	dec.Strict = strict
	return dec
}
