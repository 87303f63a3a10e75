"""`kuberay-llm size`: deployments sized from a service level (TTFT, TPOT, request rate)."""
