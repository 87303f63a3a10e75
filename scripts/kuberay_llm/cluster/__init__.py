"""The local cluster: kind without Docker, with Ray inside.

A real Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler) from ./bin,
kwok's fake GPU nodes shaped like the tiers' (data/local-cluster.yaml), the pinned KubeRay operator, and a
local kubelet that runs the pods of the CPU node as real processes in Linux namespaces, so a RayService's
Ray head and workers are real `ray start` processes (Ray and vLLM from ./.venv). Needs root.

`kuberay-llm cluster up|down|status` (command.py); the components: controlplane.py.
"""
