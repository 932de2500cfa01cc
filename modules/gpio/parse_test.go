package gpio

import (
	"encoding/json"
	"math"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/picockpit/picockpit-client/agent/contract"
)

func ip(v int) *int         { return &v }
func fp(v float64) *float64 { return &v }

func TestParseSet(t *testing.T) {
	for _, c := range []struct {
		in   string
		want contract.GPIOSet
		err  string
	}{
		{in: "1", want: contract.GPIOSet{Value: ip(1)}},
		{in: " 0\r\n", want: contract.GPIOSet{Value: ip(0)}},
		{in: "ON", want: contract.GPIOSet{Value: ip(1)}},
		{in: "Off", want: contract.GPIOSet{Value: ip(0)}},
		{in: "true", want: contract.GPIOSet{Value: ip(1)}},
		{in: "FALSE", want: contract.GPIOSet{Value: ip(0)}},
		{in: `"on"`, want: contract.GPIOSet{Value: ip(1)}},
		{in: `{"value":1}`, want: contract.GPIOSet{Value: ip(1)}},
		{in: `{"value":0.0}`, want: contract.GPIOSet{Value: ip(0)}},
		{in: `{"value":true}`, want: contract.GPIOSet{Value: ip(1)}},
		{in: `{"value":"off"}`, want: contract.GPIOSet{Value: ip(0)}},
		{in: `{"pwm":{"frequency":100,"duty":0.25}}`, want: contract.GPIOSet{PWM: &contract.GPIOPWMSet{Frequency: fp(100), Duty: fp(0.25)}}},
		{in: `{"pwm":{"duty":1}}`, want: contract.GPIOSet{PWM: &contract.GPIOPWMSet{Duty: fp(1)}}},
		{in: `{"mode":"output","value":1}`, want: contract.GPIOSet{Mode: "out", Value: ip(1)}},
		{in: `{"mode":"in"}`, want: contract.GPIOSet{Mode: "in"}},
		{in: "", err: "empty payload"},
		{in: "  ", err: "empty payload"},
		{in: "2", err: `cannot read "2"`},
		{in: "yes", err: `cannot read "yes"`},
		{in: "[1]", err: "cannot read"},
		{in: `"maybe"`, err: "cannot read"},
		{in: `{}`, err: "empty set request"},
		{in: `{"value":null}`, err: "value is null"},
		{in: `{"value":2}`, err: "value 2 is not 0 or 1"},
		{in: `{"value":"yes"}`, err: `value "\"yes\"" is not 0, 1`},
		{in: `{"value":1,"extra":1}`, err: "extra: unknown field"},
		{in: `{"value":1} {}`, err: "unexpected data after"},
		{in: `{"pwm":{}}`, err: "give frequency (Hz) and/or duty"},
		{in: `{"pwm":{"frequency":0}}`, err: "must be a positive number"},
		{in: `{"pwm":{"frequency":-5}}`, err: "must be a positive number"},
		{in: `{"pwm":{"frequency":1e9}}`, err: "is above"},
		{in: `{"pwm":{"duty":-0.1}}`, err: "outside 0..1"},
		{in: `{"pwm":{"duty":"half"}}`, err: "bad set request"},
		{in: `{"mode":"blink"}`, err: `mode "blink" is not one of`},
		{in: `{"value":1`, err: "bad set request"},
		{in: strings.Repeat(" ", MaxSetPayload+1), err: "longer than"},
	} {
		got, err := ParseSet([]byte(c.in))
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("ParseSet(%q) error %v, want %q", c.in, err, c.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseSet(%q): %v", c.in, err)
			continue
		}
		if d := cmp.Diff(c.want, got); d != "" {
			t.Errorf("ParseSet(%q) (-want +got):\n%s", c.in, d)
		}
	}
}

// FuzzParseSet: whatever a client sends, ParseSet does not panic, and what
// it accepts is a valid request that survives a JSON round trip.
func FuzzParseSet(f *testing.F) {
	for _, s := range []string{"1", "off", `{"value":1}`, `{"pwm":{"frequency":100,"duty":0.25}}`, `{"mode":"pwm"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		set, err := ParseSet(b)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		if set.Value == nil && set.PWM == nil && set.Mode == "" {
			t.Fatalf("ParseSet(%q) accepted an empty request", b)
		}
		if set.Value != nil && *set.Value != 0 && *set.Value != 1 {
			t.Fatalf("ParseSet(%q) value %d", b, *set.Value)
		}
		if p := set.PWM; p != nil {
			if p.Frequency == nil && p.Duty == nil {
				t.Fatalf("ParseSet(%q) empty pwm", b)
			}
			if p.Frequency != nil && !(*p.Frequency > 0 && *p.Frequency <= MaxHardwarePWMFrequency) {
				t.Fatalf("ParseSet(%q) frequency %v", b, *p.Frequency)
			}
			if p.Duty != nil && (math.IsNaN(*p.Duty) || *p.Duty < 0 || *p.Duty > 1) {
				t.Fatalf("ParseSet(%q) duty %v", b, *p.Duty)
			}
		}
		if set.Mode != "" {
			if _, ok := normMode(set.Mode); !ok {
				t.Fatalf("ParseSet(%q) mode %q", b, set.Mode)
			}
		}
		// The canonical JSON form of an accepted request parses to the same.
		canon, err := json.Marshal(set)
		if err != nil {
			t.Fatal(err)
		}
		again, err := ParseSet(canon)
		if err != nil {
			t.Fatalf("ParseSet(%q) ok, but its canonical form %s: %v", b, canon, err)
		}
		if d := cmp.Diff(set, again); d != "" {
			t.Fatalf("round trip of %q (-first +again):\n%s", b, d)
		}
	})
}
