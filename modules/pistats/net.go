package pistats

import (
	"bytes"
	"path/filepath"
	"time"

	"github.com/picockpit/picockpit-client/agent/contract"
)

// netEntry remembers one interface between samples.
type netEntry struct {
	name     string
	loopback bool
	seen     uint64 // sample number when last seen
	prevRx   uint64
	prevTx   uint64
	prevAt   time.Time
	havePrev bool
	// output storage
	rx, tx     uint64
	rxR, txR   float64
	rateReason string
}

type netState struct {
	entries map[string]*netEntry
	order   []*netEntry // this sample's interfaces in file order
	out     []contract.StatsNet
}

// isLoopback tells from sysfs whether an interface is a loopback device
// (type 772, ARPHRD_LOOPBACK); "lo" is one by name.
func (s *Sampler) isLoopback(name string) bool {
	if name == "lo" {
		return true
	}
	v, err := readSmall(filepath.Join(s.cfg.Root, "sys/class/net", name, "type"))
	return err == nil && v == "772"
}

func (s *Sampler) sampleNet(now time.Time) {
	b, err := s.rd.read(s.pNetDev)
	if err != nil {
		s.unav[contract.MetricNet] = s.reason(err, "")
		return
	}
	ns := &s.net
	ns.order = ns.order[:0]
	line := 0
	for i := 0; ; line++ {
		l, next, ok := nextLine(b, i)
		if !ok {
			break
		}
		i = next
		if line < 2 { // two header lines
			continue
		}
		colon := bytes.IndexByte(l, ':')
		if colon < 0 {
			continue
		}
		name := trimSpace(l[:colon])
		var rx, tx uint64
		ok = true
		j := colon + 1
		for k := 0; k < 9 && ok; k++ {
			var f []byte
			f, j = nextField(l, j)
			switch k {
			case 0:
				rx, ok = parseUint(f)
			case 8:
				tx, ok = parseUint(f)
			}
		}
		if !ok {
			continue
		}
		e := ns.entries[string(name)]
		if e == nil {
			n := string(name)
			e = &netEntry{name: n, loopback: s.isLoopback(n)}
			ns.entries[n] = e
		}
		e.seen = s.seq
		e.rx, e.tx = rx, tx
		e.rateReason = ""
		switch {
		case !e.havePrev:
			e.rateReason = "first sample of this interface: rates need two readings"
		case rx < e.prevRx || tx < e.prevTx:
			e.rateReason = "counters went backwards (interface re-created?)"
		case !now.After(e.prevAt):
			e.rateReason = "no time elapsed since the previous reading"
		default:
			dt := now.Sub(e.prevAt).Seconds()
			e.rxR = round(float64(rx-e.prevRx)/dt, 2)
			e.txR = round(float64(tx-e.prevTx)/dt, 2)
		}
		e.prevRx, e.prevTx, e.prevAt, e.havePrev = rx, tx, now, true
		ns.order = append(ns.order, e)
	}
	// Forget interfaces that went away, so a re-created one starts afresh.
	for n, e := range ns.entries {
		if e.seen != s.seq {
			delete(ns.entries, n)
		}
	}

	ns.out = ns.out[:0]
	emit := func(e *netEntry) {
		o := contract.StatsNet{Interface: e.name, RxBytes: &e.rx, TxBytes: &e.tx}
		if e.rateReason == "" {
			o.RxBytesPerSecond, o.TxBytesPerSecond = &e.rxR, &e.txR
		} else {
			s.unav["net["+e.name+"].rates"] = e.rateReason
		}
		ns.out = append(ns.out, o)
	}
	if s.cfg.Interfaces == nil {
		for _, e := range ns.order {
			if !e.loopback {
				emit(e)
			}
		}
	} else {
		for _, want := range s.cfg.Interfaces {
			if e := ns.entries[want]; e != nil {
				emit(e)
			} else {
				ns.out = append(ns.out, contract.StatsNet{Interface: want, Unavailable: "no such interface in /proc/net/dev"})
			}
		}
	}
	if ns.out == nil {
		ns.out = []contract.StatsNet{}
	}
	s.out.Net = ns.out
}

// sampleWiFi reads /proc/net/wireless: per interface the link quality and the
// signal level in dBm.
func (s *Sampler) sampleWiFi() {
	b, err := s.rd.read(s.pWireless)
	if err != nil {
		s.unav[contract.MetricWiFi] = s.reason(err, " (no Wi-Fi, or a kernel without wireless extensions)")
		return
	}
	s.wifi = s.wifi[:0]
	line := 0
	for i := 0; ; line++ {
		l, next, ok := nextLine(b, i)
		if !ok {
			break
		}
		i = next
		if line < 2 {
			continue
		}
		colon := bytes.IndexByte(l, ':')
		if colon < 0 {
			continue
		}
		name := trimSpace(l[:colon])
		if s.cfg.Interfaces != nil && !containsBytes(s.cfg.Interfaces, name) {
			continue
		}
		_, j := nextField(l, colon+1) // status
		fq, j := nextField(l, j)
		fl, _ := nextField(l, j)
		q, ok1 := parseDecimal(trimDot(fq))
		lv, ok2 := parseDecimal(trimDot(fl))
		if !ok1 || !ok2 || q < 0 {
			continue
		}
		var n string
		if e := s.net.entries[string(name)]; e != nil {
			n = e.name
		} else {
			n = string(name)
		}
		s.wifi = append(s.wifi, contract.StatsWiFi{Interface: n, LinkQuality: q, SignalDBm: lv})
	}
	if s.wifi == nil {
		s.wifi = []contract.StatsWiFi{}
	}
	s.out.WiFi = s.wifi
}

// trimDot drops the trailing '.' /proc/net/wireless prints after values that
// were updated since the last read.
func trimDot(b []byte) []byte {
	if len(b) > 0 && b[len(b)-1] == '.' {
		return b[:len(b)-1]
	}
	return b
}

func containsBytes(list []string, b []byte) bool {
	for _, s := range list {
		if s == string(b) {
			return true
		}
	}
	return false
}
