// Package buildinfo tells what binary is running: its version, and a
// *_build_info metric with it.
package buildinfo

import (
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
)

// Version is the version of the running binary: its module version, or its
// VCS revision (12 characters), or "dev".
func Version() string {
	bi, _ := debug.ReadBuildInfo()
	return version(bi)
}

func version(bi *debug.BuildInfo) string {
	if bi == nil {
		return "dev"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	if r := revision(bi); r != "" {
		return r
	}
	return "dev"
}

func revision(bi *debug.BuildInfo) string {
	if bi == nil {
		return ""
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			return s.Value[:12]
		}
	}
	return ""
}

// Register registers name (sessiond_build_info, gateway_build_info): a
// gauge of 1 whose labels say the version, the VCS revision and the Go
// version, so that dashboards and alerts can tell which build runs where.
func Register(reg prometheus.Registerer, name string) {
	bi, _ := debug.ReadBuildInfo()
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: name, Help: "1, with the running build's version, VCS revision and Go version as labels.",
		ConstLabels: prometheus.Labels{"version": version(bi), "revision": revision(bi), "goversion": runtime.Version()},
	})
	g.Set(1)
	reg.MustRegister(g)
}
