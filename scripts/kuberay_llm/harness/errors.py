"""Harness errors and their exit codes (kuberay_llm/exitcodes.py): 1 failed (cause printed), 2 usage,
3 cluster unreachable or forbidden, 4 timed out.

All are `UserError`s, so the CLI prints them as one line without a traceback.
"""

from kuberay_llm import exitcodes
from kuberay_llm.errors import UserError


class Failed(UserError):
    """The deployment failed; the message is the cause."""

    exit_code = exitcodes.FAILED


class TimedOut(UserError):
    exit_code = exitcodes.PENDING


class UsageError(UserError):
    exit_code = exitcodes.USAGE


class ConnectionFailed(UserError):
    """No cluster, unreachable API server, bad kubeconfig, or missing permissions."""

    exit_code = exitcodes.UNAVAILABLE
