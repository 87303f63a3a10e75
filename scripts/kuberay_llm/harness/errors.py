"""Harness errors and their exit codes: 0 ok, 1 failed (cause printed), 2 timed out, 3 usage or connection.

All are `UserError`s, so the CLI prints them as one line without a traceback.
"""

from kuberay_llm.errors import UserError


class Failed(UserError):
    """The deployment failed; the message is the cause."""

    exit_code = 1


class TimedOut(UserError):
    exit_code = 2


class UsageError(UserError):
    exit_code = 3


class ConnectionFailed(UserError):
    """No cluster, unreachable API server, bad kubeconfig, or missing permissions."""

    exit_code = 3
