package dialoginfo

import "bytes"

// Direction is the media direction stated by an SDP body.
type Direction uint8

// Directions, from the offerer's point of view.
const (
	DirUnknown Direction = iota // no SDP, or nothing that says
	DirSendRecv
	DirSendOnly
	DirRecvOnly
	DirInactive
)

// String returns the SDP attribute name of the direction.
func (d Direction) String() string {
	switch d {
	case DirSendRecv:
		return "sendrecv"
	case DirSendOnly:
		return "sendonly"
	case DirRecvOnly:
		return "recvonly"
	case DirInactive:
		return "inactive"
	}
	return "unknown"
}

// Holds reports whether an offer with this direction puts the call on hold.
func (d Direction) Holds() bool { return d == DirSendOnly || d == DirInactive }

// maxSDP is the most of a body SDPDirection looks at.
const maxSDP = 64 << 10

// SDPDirection returns the overall direction of an SDP body: the session
// level a=sendrecv|sendonly|recvonly|inactive applies to every m= section
// that has none of its own; a c= address 0.0.0.0 (RFC 2543 hold) means
// inactive; m= sections with port 0 are ignored. The result is sendrecv if
// any stream is sendrecv, else recvonly if any is, else sendonly if any is,
// else inactive; with no m= section it is the session-level value. Bodies
// that are not SDP give DirUnknown. Only the first 64 KiB are read.
func SDPDirection(body []byte) Direction {
	if len(body) > maxSDP {
		body = body[:maxSDP]
	}
	var (
		session     Direction
		sessionNull bool
		inMedia     bool
		sawV        bool
		media       []Direction
		cur         Direction
		curConn     int // 0 no c= line, 1 null address, 2 real address
		curDead     bool
	)
	flush := func() {
		if !inMedia || curDead {
			return
		}
		d := cur
		if d == DirUnknown {
			d = session
		}
		if curConn == 1 || (curConn == 0 && sessionNull) {
			d = DirInactive
		}
		if d == DirUnknown {
			d = DirSendRecv // RFC 4566 default
		}
		media = append(media, d)
	}
	for len(body) > 0 {
		var line []byte
		if i := bytes.IndexByte(body, '\n'); i >= 0 {
			line, body = body[:i], body[i+1:]
		} else {
			line, body = body, nil
		}
		line = bytes.TrimRight(line, "\r")
		if len(line) < 2 || line[1] != '=' {
			continue
		}
		val := line[2:]
		switch line[0] {
		case 'v':
			sawV = true
		case 'm':
			flush()
			inMedia, cur, curConn, curDead = true, DirUnknown, 0, mediaPortZero(val)
		case 'c':
			null := isNullConn(val)
			switch {
			case inMedia && null:
				curConn = 1
			case inMedia:
				curConn = 2
			case null:
				sessionNull = true
			}
		case 'a':
			d := attrDirection(val)
			if d == DirUnknown {
				continue
			}
			if inMedia {
				cur = d
			} else {
				session = d
			}
		}
	}
	flush()
	if !sawV && len(media) == 0 && session == DirUnknown {
		return DirUnknown
	}
	if len(media) == 0 {
		if sessionNull {
			return DirInactive
		}
		return session
	}
	var any [5]bool
	for _, d := range media {
		any[d] = true
	}
	switch {
	case any[DirSendRecv]:
		return DirSendRecv
	case any[DirRecvOnly]:
		return DirRecvOnly
	case any[DirSendOnly]:
		return DirSendOnly
	}
	return DirInactive
}

func attrDirection(v []byte) Direction {
	switch string(bytes.TrimSpace(v)) {
	case "sendrecv":
		return DirSendRecv
	case "sendonly":
		return DirSendOnly
	case "recvonly":
		return DirRecvOnly
	case "inactive":
		return DirInactive
	}
	return DirUnknown
}

// isNullConn reports whether a c= value is "IN IP4 0.0.0.0".
func isNullConn(v []byte) bool {
	f := bytes.Fields(v)
	if len(f) < 3 {
		return false
	}
	a := f[2]
	if i := bytes.IndexByte(a, '/'); i >= 0 {
		a = a[:i]
	}
	return string(a) == "0.0.0.0"
}

// mediaPortZero reports whether an m= line has port 0 (a disabled stream).
func mediaPortZero(v []byte) bool {
	f := bytes.Fields(v)
	if len(f) < 2 {
		return false
	}
	p := f[1]
	if i := bytes.IndexByte(p, '/'); i >= 0 {
		p = p[:i]
	}
	return string(p) == "0"
}
