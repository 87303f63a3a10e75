"""Load generator for any OpenAI-compatible endpoint: a concurrency sweep of `vllm bench serve`."""
