package envconf

import (
	"strings"
	"testing"
	"time"
)

func TestReaderReportsEveryProblemAtOnce(t *testing.T) {
	env := map[string]string{"D": "soon", "N": "9", "B": "maybe", "OK": "5s", "NEG": "-1s"}
	r := New(func(k string) string { return env[k] })
	if got := r.Duration("OK", time.Second, 0); got != 5*time.Second {
		t.Fatalf("OK: %v", got)
	}
	if got := r.Duration("UNSET", time.Minute, 0); got != time.Minute {
		t.Fatalf("UNSET: %v", got)
	}
	r.Duration("D", 0, 0)
	r.Duration("NEG", 0, 0)
	r.Int("N", 1, 1, 5)
	r.Bool("B", false)
	r.Required("R", "x://y")
	if r.OK() {
		t.Fatal("no problem found")
	}
	msg := r.Err().Error()
	for _, want := range []string{`D: "soon" is not a duration`, `NEG: "-1s" must be at least 0s`, `N: "9" must be 1 to 5`, `B: "maybe" must be true or false`, "R is required (e.g. x://y)"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
}
