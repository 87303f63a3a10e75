"""Offline preflight checks of rendered manifests; `kuberay-llm validate` runs them all."""
