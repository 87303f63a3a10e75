"""The harness's errors are the package's (kuberay_llm/errors.py), named here for the harness modules."""

from kuberay_llm.errors import ConnectionFailed, Failed, TimedOut, UsageError

__all__ = ["ConnectionFailed", "Failed", "TimedOut", "UsageError"]
