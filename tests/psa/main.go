// Command psa checks pod templates against the Pod Security Standards with Kubernetes' own
// admission library (k8s.io/pod-security-admission, the code the API server's PodSecurity
// admission plugin runs), so the chart's tests judge its pods as a cluster enforcing a level
// would.
//
// It reads JSON on stdin:
//
//	{"level": "restricted", "version": "latest", "pods": [{"name": "...", "metadata": {...}, "spec": {...}}]}
//
// and writes, for each pod, what the level forbids (an empty list: allowed):
//
//	[{"name": "...", "forbidden": ["host namespaces: hostPID=true"]}]
package main

import (
	"encoding/json"
	"fmt"
	"os"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"
)

type pod struct {
	Name     string            `json:"name"`
	Metadata metav1.ObjectMeta `json:"metadata"`
	Spec     corev1.PodSpec    `json:"spec"`
}

type input struct {
	Level   string `json:"level"`
	Version string `json:"version"`
	Pods    []pod  `json:"pods"`
}

type verdict struct {
	Name      string   `json:"name"`
	Forbidden []string `json:"forbidden"`
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "psa:", err)
		os.Exit(1)
	}
}

func run() error {
	var in input
	decoder := json.NewDecoder(os.Stdin)
	decoder.DisallowUnknownFields()
	if err := decoder.Decode(&in); err != nil {
		return fmt.Errorf("reading the input: %w", err)
	}
	level, err := api.ParseLevel(in.Level)
	if err != nil {
		return err
	}
	version, err := api.ParseVersion(in.Version)
	if err != nil {
		return err
	}
	evaluator, err := policy.NewEvaluator(policy.DefaultChecks(), nil)
	if err != nil {
		return err
	}
	verdicts := []verdict{}
	for i := range in.Pods {
		p := &in.Pods[i]
		results := evaluator.EvaluatePod(api.LevelVersion{Level: level, Version: version}, &p.Metadata, &p.Spec)
		forbidden := []string{}
		for _, r := range results {
			if !r.Allowed {
				forbidden = append(forbidden, r.ForbiddenReason+": "+r.ForbiddenDetail)
			}
		}
		verdicts = append(verdicts, verdict{Name: p.Name, Forbidden: forbidden})
	}
	return json.NewEncoder(os.Stdout).Encode(verdicts)
}
