package sessions

import (
	"strings"
	"testing"
)

func TestCleanHeaderText(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"curl/8.5.0":             "curl/8.5.0",
		"a\xffb":                 "a\uFFFDb",
		"a\x00b\tc\r\nd":         "abcd",
		"Safari \u00e9":          "Safari \u00e9",
		strings.Repeat("x", 600): strings.Repeat("x", 512),
	} {
		if got := cleanHeaderText(in, 512); got != want || !storable(got) {
			t.Errorf("%q: %q, want %q", in, got, want)
		}
	}
}
