"""Errors a user can act on. The CLI prints them as one line and exits; it never shows a traceback."""


class UserError(Exception):
    """Bad input or a missing prerequisite. `str(err)` is the whole message a user sees."""

    exit_code = 2


class ToolError(UserError):
    """A pinned tool failed (kustomize, helm, kubeconform) or is missing from ./bin."""

    exit_code = 2
