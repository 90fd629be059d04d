package buildinfo

import (
	"runtime"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestBuildInfoIsOneWithItsLabels(t *testing.T) {
	reg := prometheus.NewRegistry()
	Register(reg, "thing_build_info")
	mfs, err := reg.Gather()
	if err != nil || len(mfs) != 1 || mfs[0].GetName() != "thing_build_info" || len(mfs[0].GetMetric()) != 1 {
		t.Fatalf("gathered %v (%v)", mfs, err)
	}
	m := mfs[0].GetMetric()[0]
	if m.GetGauge().GetValue() != 1 {
		t.Errorf("value %v, want 1", m.GetGauge().GetValue())
	}
	labels := map[string]string{}
	for _, l := range m.GetLabel() {
		labels[l.GetName()] = l.GetValue()
	}
	if labels["goversion"] != runtime.Version() || labels["version"] != Version() || labels["version"] == "" {
		t.Errorf("labels %v", labels)
	}
	if _, ok := labels["revision"]; !ok {
		t.Errorf("no revision label: %v", labels)
	}
}
