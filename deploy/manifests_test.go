// Package deploy holds the deployment (Kubernetes manifests, the NATS
// configurations, the Dockerfile, monitoring); its test checks them
// offline.
package deploy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// object is one manifest of a build, decoded into its API type.
type object struct {
	kind, name, namespace string
	typed                 any
}

// schemas are the API types the manifests may use: a kind not here, or a
// field its type does not have, fails the build's check (the offline schema
// validation: Kubernetes' own Go types, strictly decoded).
func schemaFor(apiVersion, kind string) (any, bool) {
	switch apiVersion + "/" + kind {
	case "v1/Namespace":
		return &corev1.Namespace{}, true
	case "v1/ConfigMap":
		return &corev1.ConfigMap{}, true
	case "v1/Service":
		return &corev1.Service{}, true
	case "v1/ServiceAccount":
		return &corev1.ServiceAccount{}, true
	case "apps/v1/Deployment":
		return &appsv1.Deployment{}, true
	case "apps/v1/StatefulSet":
		return &appsv1.StatefulSet{}, true
	case "batch/v1/Job":
		return &batchv1.Job{}, true
	case "policy/v1/PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}, true
	case "networking.k8s.io/v1/NetworkPolicy":
		return &networkingv1.NetworkPolicy{}, true
	case "autoscaling/v2/HorizontalPodAutoscaler":
		return &autoscalingv2.HorizontalPodAutoscaler{}, true
	case "monitoring.coreos.com/v1/PrometheusRule":
		return &prometheusRule{}, true
	}
	return nil, false
}

// prometheusRule is the Prometheus operator's PrometheusRule, as far as the
// manifests use it.
type prometheusRule struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name      string            `json:"name"`
		Namespace string            `json:"namespace"`
		Labels    map[string]string `json:"labels"`
	} `json:"metadata"`
	Spec ruleFile `json:"spec"`
}

// ruleFile is a Prometheus rules file (and a PrometheusRule's spec).
type ruleFile struct {
	Groups []struct {
		Name     string `json:"name"`
		Interval string `json:"interval,omitempty"`
		Rules    []struct {
			Alert       string            `json:"alert,omitempty"`
			Record      string            `json:"record,omitempty"`
			Expr        string            `json:"expr"`
			For         string            `json:"for,omitempty"`
			Labels      map[string]string `json:"labels,omitempty"`
			Annotations map[string]string `json:"annotations,omitempty"`
		} `json:"rules"`
	} `json:"groups"`
}

// build runs kustomize on dir, as `kubectl kustomize dir` does, and decodes
// every object strictly into its API type.
func build(t *testing.T, dir string) []object {
	t.Helper()
	res, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize %s: %v", dir, err)
	}
	var out []object
	for _, r := range res.Resources() {
		typed, ok := schemaFor(r.GetApiVersion(), r.GetKind())
		if !ok {
			t.Errorf("%s: %s %s/%s has no schema here", dir, r.GetName(), r.GetApiVersion(), r.GetKind())
			continue
		}
		raw, err := r.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(typed); err != nil {
			t.Errorf("%s: %s %s does not match its schema: %v", dir, r.GetKind(), r.GetName(), err)
			continue
		}
		out = append(out, object{kind: r.GetKind(), name: r.GetName(), namespace: r.GetNamespace(), typed: typed})
	}
	return out
}

func podSpecs(objs []object) map[string]*corev1.PodTemplateSpec {
	out := map[string]*corev1.PodTemplateSpec{}
	for _, o := range objs {
		switch w := o.typed.(type) {
		case *appsv1.Deployment:
			out["Deployment/"+o.name] = &w.Spec.Template
		case *appsv1.StatefulSet:
			out["StatefulSet/"+o.name] = &w.Spec.Template
		case *batchv1.Job:
			out["Job/"+o.name] = &w.Spec.Template
		}
	}
	return out
}

// TestTheManifests builds the hub's and a point of presence's manifests
// and holds them to what an operator relies on: every object valid against
// its API type; images pinned; default-deny networking with a policy of its
// own for every workload; probes; the schema migrated by sessiond's init
// container; gatewayd scaled by a HorizontalPodAutoscaler.
func TestTheManifests(t *testing.T) {
	for _, dir := range []string{"k8s", "k8s/pop", "monitoring"} {
		t.Run(dir, func(t *testing.T) {
			objs := build(t, dir)
			if len(objs) == 0 {
				t.Fatal("nothing built")
			}
			pods := podSpecs(objs)
			for name, p := range pods {
				for _, c := range slices.Concat(p.Spec.InitContainers, p.Spec.Containers) {
					if !pinned(c.Image) {
						t.Errorf("%s: container %s runs %q, not pinned by version", name, c.Name, c.Image)
					}
				}
				if !strings.HasPrefix(name, "Job/") {
					for _, c := range p.Spec.Containers {
						if c.ReadinessProbe == nil {
							t.Errorf("%s: container %s has no readiness probe", name, c.Name)
						}
					}
				}
			}
			checkNetworkPolicies(t, objs, pods)
			checkAutoscaling(t, objs)
			if dir == "k8s" {
				checkMigration(t, pods)
			}
		})
	}
}

// pinned: a tag that names a version (not latest, not none) or a digest.
func pinned(image string) bool {
	if strings.Contains(image, "@sha256:") {
		return true
	}
	i := strings.LastIndexByte(image, ':')
	if i < 0 || strings.Contains(image[i:], "/") {
		return false
	}
	tag := image[i+1:]
	return tag != "latest" && tag != "" && strings.ContainsAny(tag, "0123456789")
}

func checkNetworkPolicies(t *testing.T, objs []object, pods map[string]*corev1.PodTemplateSpec) {
	t.Helper()
	var policies []*networkingv1.NetworkPolicy
	denyAll := false
	for _, o := range objs {
		np, ok := o.typed.(*networkingv1.NetworkPolicy)
		if !ok {
			continue
		}
		if len(np.Spec.PodSelector.MatchLabels) == 0 && len(np.Spec.PodSelector.MatchExpressions) == 0 &&
			len(np.Spec.Ingress) == 0 && len(np.Spec.Egress) == 0 && len(np.Spec.PolicyTypes) == 2 {
			denyAll = true
			continue
		}
		policies = append(policies, np)
	}
	if len(pods) > 0 && !denyAll {
		t.Error("no default-deny NetworkPolicy (empty podSelector, Ingress and Egress, no rule)")
	}
	for name, p := range pods {
		if strings.HasPrefix(name, "Job/") {
			continue
		}
		var covered bool
		for _, np := range policies {
			if len(np.Spec.PodSelector.MatchLabels) > 0 && selects(np.Spec.PodSelector.MatchLabels, p.Labels) &&
				slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) && slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress) {
				covered = true
				for _, c := range p.Spec.Containers {
					for _, port := range c.Ports {
						if !allowsPort(np, port.ContainerPort) {
							t.Errorf("%s: port %d (%s) is not let in by NetworkPolicy %s", name, port.ContainerPort, port.Name, np.Name)
						}
					}
				}
			}
		}
		if !covered {
			t.Errorf("%s: no NetworkPolicy of its own (Ingress and Egress) selects it", name)
		}
	}
}

func selects(sel, labels map[string]string) bool {
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func allowsPort(np *networkingv1.NetworkPolicy, port int32) bool {
	for _, rule := range np.Spec.Ingress {
		for _, p := range rule.Ports {
			if p.Port != nil && p.Port.IntValue() == int(port) {
				return true
			}
		}
	}
	return false
}

func checkAutoscaling(t *testing.T, objs []object) {
	t.Helper()
	deployments := map[string]*appsv1.Deployment{}
	for _, o := range objs {
		if d, ok := o.typed.(*appsv1.Deployment); ok {
			deployments[o.name] = d
		}
	}
	scaled := map[string]bool{}
	for _, o := range objs {
		hpa, ok := o.typed.(*autoscalingv2.HorizontalPodAutoscaler)
		if !ok {
			continue
		}
		ref := hpa.Spec.ScaleTargetRef
		d := deployments[ref.Name]
		switch {
		case ref.Kind != "Deployment" || d == nil:
			t.Errorf("HPA %s scales %s %s, which is not here", o.name, ref.Kind, ref.Name)
			continue
		case d.Spec.Replicas != nil:
			t.Errorf("Deployment %s sets replicas: every apply would undo its HPA", ref.Name)
		case hpa.Spec.MinReplicas == nil || *hpa.Spec.MinReplicas < 2:
			t.Errorf("HPA %s may scale %s below 2 pods", o.name, ref.Name)
		}
		for _, c := range d.Spec.Template.Spec.Containers {
			if _, ok := c.Resources.Requests[corev1.ResourceCPU]; !ok {
				t.Errorf("Deployment %s: container %s has no CPU request, which CPU utilization needs", ref.Name, c.Name)
			}
		}
		scaled[ref.Name] = true
	}
	if _, ok := deployments["gatewayd"]; ok && !scaled["gatewayd"] {
		t.Error("gatewayd has no HorizontalPodAutoscaler")
	}
}

func checkMigration(t *testing.T, pods map[string]*corev1.PodTemplateSpec) {
	t.Helper()
	p := pods["Deployment/sessiond"]
	if p == nil {
		t.Fatal("no sessiond Deployment")
	}
	for _, c := range p.Spec.InitContainers {
		if slices.Equal(c.Command, []string{"/revokectl", "migrate"}) && c.Image == p.Spec.Containers[0].Image {
			return
		}
	}
	t.Errorf("sessiond's pods do not migrate in an init container of their own image: %v", fmt.Sprint(p.Spec.InitContainers))
}

// TestThePrometheusRuleIsTheRulesFile: the PrometheusRule's spec is the
// plain rules file (which promtool checks and unit-tests), group for group
// and rule for rule.
func TestThePrometheusRuleIsTheRulesFile(t *testing.T) {
	var plain ruleFile
	readYAML(t, "monitoring/alerts.rules.yml", &plain)
	var pr prometheusRule
	readYAML(t, "monitoring/prometheusrule.yaml", &pr)
	a, _ := json.Marshal(plain)
	b, _ := json.Marshal(pr.Spec)
	if !bytes.Equal(a, b) {
		t.Fatalf("monitoring/prometheusrule.yaml's spec differs from monitoring/alerts.rules.yml:\n%s\n%s", a, b)
	}
	if len(plain.Groups) == 0 {
		t.Fatal("no rule groups")
	}
}

func readYAML(t *testing.T, file string, v any) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(b, v); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
}
