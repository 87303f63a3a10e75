"""Capacity planner: what fits on which GPUs, and how many max-length requests vLLM's KV cache holds.

catalog (model and GPU facts from kuberay_llm/data) -> weights (bytes per GPU per pipeline stage) ->
overhead (activation and runtime memory) -> accounting (vLLM's KV blocks and concurrency). overlay reads a
rendered RayService; preflight turns a plan into validator findings; cli, bench and readme are the front ends.
"""
