package confkit

import "testing"

func TestParseSizeRoundTrips(t *testing.T) {
	for in, want := range map[string]Size{"512MiB": 512 << 20, "1GB": 1e9, "64k": 64 << 10, "100": 100, " 2 gib ": 2 << 30} {
		got, err := ParseSize(in)
		if err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "-1k", "NaN", "lots", "1e30t"} {
		if _, err := ParseSize(bad); err == nil {
			t.Errorf("ParseSize(%q) accepted", bad)
		}
	}
	if s := Size(3 << 30).String(); s != "3GiB" {
		t.Errorf("String = %q", s)
	}
}

func TestFieldErrorNamesKeyAndLine(t *testing.T) {
	if got := (&FieldError{Key: "uplink.bandwidth", Msg: "bad"}).Error(); got != "uplink.bandwidth: bad" {
		t.Error(got)
	}
	if got := (&FieldError{Key: "sensors[0].name", Line: 7, Msg: "bad"}).Error(); got != "sensors[0].name (line 7): bad" {
		t.Error(got)
	}
	if !DurationOverflows("9999999h") || DurationOverflows("soon") {
		t.Error("DurationOverflows")
	}
}
