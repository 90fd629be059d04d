package natsx

import (
	"os"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
)

// The deployment's NATS configurations parse as nats-server reads them and
// declare what a point of presence needs: the hub's JetStream domain and
// leaf port, the leaf's domain and remote. The copies in the Kubernetes
// manifests are the files, word for word.
func TestTheDeploymentsNATSConfigurations(t *testing.T) {
	t.Setenv("SERVER_NAME", "nats-0")
	t.Setenv("POP_DOMAIN", "pop-fra1")
	t.Setenv("HUB_LEAF_URL", "nats-leaf://nats-leafnodes.example.net:7422")
	hub, err := server.ProcessConfigFile("../../deploy/nats/nats-cluster.conf")
	if err != nil {
		t.Fatal(err)
	}
	if hub.JetStreamDomain != "hub" || hub.LeafNode.Port != 7422 || !hub.LeafNode.NoAdvertise || hub.ServerName != "nats-0" {
		t.Errorf("hub: domain %q, leaf port %d, no_advertise %v, name %q", hub.JetStreamDomain, hub.LeafNode.Port, hub.LeafNode.NoAdvertise, hub.ServerName)
	}
	leaf, err := server.ProcessConfigFile("../../deploy/nats/nats-leaf.conf")
	if err != nil {
		t.Fatal(err)
	}
	if leaf.JetStreamDomain != "pop-fra1" || len(leaf.LeafNode.Remotes) != 1 || len(leaf.LeafNode.Remotes[0].URLs) != 1 ||
		leaf.LeafNode.Remotes[0].URLs[0].String() != "nats-leaf://nats-leafnodes.example.net:7422" {
		t.Errorf("leaf: domain %q, remotes %+v", leaf.JetStreamDomain, leaf.LeafNode.Remotes)
	}
	for file, manifest := range map[string]string{"../../deploy/nats/nats-cluster.conf": "../../deploy/k8s/nats.yaml",
		"../../deploy/nats/nats-leaf.conf": "../../deploy/k8s/pop/nats-leaf.yaml"} {
		want, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if got := embedded(t, manifest); got != string(want) {
			t.Errorf("the copy of %s in %s differs from the file: change both together", file, manifest)
		}
	}
}

// embedded is the block scalar after "nats.conf: |" in a manifest, with
// its indentation removed.
func embedded(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	var out []string
	in, indent := false, ""
	for _, l := range lines {
		if !in {
			if strings.TrimSpace(l) == "nats.conf: |" {
				in = true
			}
			continue
		}
		if indent == "" && strings.TrimSpace(l) != "" {
			indent = l[:len(l)-len(strings.TrimLeft(l, " "))]
		}
		if strings.TrimSpace(l) != "" && !strings.HasPrefix(l, indent) {
			break
		}
		out = append(out, strings.TrimPrefix(l, indent))
	}
	for len(out) > 0 && out[len(out)-1] == "" {
		out = out[:len(out)-1]
	}
	return strings.Join(out, "\n") + "\n"
}
