"""Errors a user can act on. The CLI prints them as one line and exits with the error's code from
kuberay_llm/exitcodes.py; it never shows a traceback."""

from kuberay_llm import exitcodes


class UserError(Exception):
    """Bad input or a missing prerequisite. `str(err)` is the whole message a user sees."""

    exit_code = exitcodes.USAGE


class ToolError(UserError):
    """A pinned tool rejected its input (kustomize on a broken overlay, helm on bad values) or failed."""

    exit_code = exitcodes.USAGE


class ToolMissing(ToolError):
    """A pinned tool or its data is not built: `make tools` builds it."""

    exit_code = exitcodes.UNAVAILABLE


class Failed(UserError):
    """A check or a deployment failed; the message is the cause."""

    exit_code = exitcodes.FAILED


class TimedOut(UserError):
    exit_code = exitcodes.PENDING


class UsageError(UserError):
    exit_code = exitcodes.USAGE


class ConnectionFailed(UserError):
    """No cluster, unreachable API server, bad kubeconfig, or missing permissions."""

    exit_code = exitcodes.UNAVAILABLE
