package envconf

import (
	"log/slog"
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

func TestLogLevelsAndURLsAreChecked(t *testing.T) {
	env := map[string]string{"L1": "debug", "L2": "verbose", "L3": "WARN", "U1": "https://sessiond:8080/.well-known/jwks.json", "U2": "notaurl", "U3": "ftp://x/y", "U4": "http://"}
	get := func(k string) string { return env[k] }
	for name, want := range map[string]slog.Level{"L1": slog.LevelDebug, "L3": slog.LevelWarn, "UNSET": slog.LevelInfo} {
		if got, err := LogLevel(get, name); err != nil || got != want {
			t.Errorf("%s: %v %v, want %v", name, got, err, want)
		}
	}
	if _, err := LogLevel(get, "L2"); err == nil || !strings.Contains(err.Error(), `L2: "verbose" is not a log level`) {
		t.Errorf("a log level that is none: %v", err)
	}
	r := New(get)
	if got := r.URL("U1", "http://x"); got != env["U1"] || !r.OK() {
		t.Fatalf("a good URL: %q %v", got, r.Err())
	}
	for _, name := range []string{"U2", "U3", "U4"} {
		r := New(get)
		if got := r.URL(name, "http://sessiond:8080/x"); got != "" || r.OK() || !strings.Contains(r.Err().Error(), name+": ") || !strings.Contains(r.Err().Error(), "is not an http(s) URL") {
			t.Errorf("%s: %q, %v", name, got, r.Err())
		}
	}
}
