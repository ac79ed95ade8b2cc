package proxyrpc

import (
	"fmt"
	"strings"
	"testing"
)

// ulDumpOf builds a ul.dump result of n AoRs with one contact each, in the
// shape Kamailio 5.6 prints (testdata/kamailio-5.6/ul.dump.json).
func ulDumpOf(n int) []byte {
	var b strings.Builder
	b.WriteString(`{"Domains":[{"Domain":{"Domain":"location","Size":1024,"AoRs":[`)
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"Info":{"AoR":"u%06d","HashID":%d,"Contacts":[{"Contact":{"Address":"sip:u%06d@10.%d.%d.%d:5060","Expires":3599,"Q":-1,"Call-ID":"%016x@10.0.0.1","CSeq":%d,"User-Agent":"Yealink SIP-T46S 66.86.0.15","Received":"[not set]","Path":"[not set]","State":"CS_NEW","Flags":0,"CFlags":0,"Socket":"udp:10.0.0.1:5060","Methods":4294967295,"Ruid":"uloc-6b0e9494-5395-%d","Instance":"[not set]","Reg-Id":0,"Server-Id":0,"Tcpconn-Id":-1,"Keepalive":0,"Last-Keepalive":1796117653,"KA-Roundtrip":0,"Last-Modified":1796117653}}]}}`,
			i, i*7919, i, i>>16&255, i>>8&255, i&255, uint64(i)*2654435761, i%1000+1, i)
	}
	fmt.Fprintf(&b, `],"Stats":{"Records":%d,"Max-Slots":4}}}]}`, n)
	return []byte(b.String())
}

// BenchmarkParseULDump10k is one reconciliation's read of a registrar
// with 10,000 registered phones.
func BenchmarkParseULDump10k(b *testing.B) {
	in := ulDumpOf(10000)
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		bs, err := ParseULDump(in, "location")
		if err != nil || len(bs.AoRs) != 10000 {
			b.Fatalf("%d AoRs, %v", len(bs.AoRs), err)
		}
	}
}
