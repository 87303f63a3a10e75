"""kuberay-llm: render, validate, plan, deploy and smoke-test Ray Serve LLM RayServices."""
