package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrape returns a /metrics page and its metric family names.
func scrape(t *testing.T, url string) ([]byte, map[string]bool) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("%s: %d %v", url, resp.StatusCode, err)
	}
	parser := expfmt.NewTextParser(model.LegacyValidation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("%s: %v", url, err)
	}
	names := map[string]bool{}
	for n := range families {
		names[n] = true
	}
	return body, names
}

// TestTheMetricsAreCleanAndWhatTheDashboardsAsk: sessiond's and a
// gateway's /metrics pass `promtool check metrics` (Prometheus' own lint:
// names, units, help), and every metric the alerting rules and the Grafana
// dashboard query is one they export, before any event has made it appear.
func TestTheMetricsAreCleanAndWhatTheDashboardsAsk(t *testing.T) {
	s := newSystem(t, 1)
	pages := map[string][]byte{}
	exported := map[string]bool{}
	for name, url := range map[string]string{"sessiond": s.api + "/metrics", "gatewayd": s.gateways[0].control + "/metrics"} {
		page, names := scrape(t, url)
		pages[name] = page
		for n := range names {
			exported[n] = true
		}
	}

	promtool, err := exec.LookPath("promtool")
	switch {
	case err != nil && os.Getenv("REVOKE_REQUIRE_PROMTOOL") != "":
		t.Fatal("promtool is required (REVOKE_REQUIRE_PROMTOOL) and not found: apt-get install prometheus")
	case err != nil:
		t.Log("promtool not found (Debian: apt-get install prometheus); the lint is skipped, the coverage below is not")
	default:
		for name, page := range pages {
			cmd := exec.Command(promtool, "check", "metrics")
			cmd.Stdin = bytes.NewReader(page)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("promtool check metrics on %s's /metrics: %v\n%s", name, err, out)
			}
		}
	}

	var queried []string
	rules, err := os.ReadFile("../../deploy/monitoring/alerts.rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	queried = append(queried, metricNames(string(rules))...)
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	b, err := os.ReadFile("../../deploy/monitoring/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatal(err)
	}
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			queried = append(queried, metricNames(tg.Expr)...)
		}
	}
	slices.Sort(queried)
	queried = slices.Compact(queried)
	if len(queried) < 10 {
		t.Fatalf("only %d metrics queried: %v", len(queried), queried)
	}
	for _, m := range queried {
		if !exported[m] {
			t.Errorf("the rules or the dashboard query %s, which neither sessiond nor gatewayd exports", m)
		}
	}
}

var metricName = regexp.MustCompile(`\b(?:sessiond|gateway)_[a-z0-9_]+`)

// metricNames are the project's metric families an expression names (a
// histogram's _bucket, _sum and _count series as the family).
func metricNames(expr string) []string {
	var out []string
	for _, m := range metricName.FindAllString(expr, -1) {
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if strings.HasSuffix(m, suffix) && strings.HasSuffix(strings.TrimSuffix(m, suffix), "_seconds") {
				m = strings.TrimSuffix(m, suffix)
			}
		}
		out = append(out, m)
	}
	return out
}
