"""The Kubernetes API server's own syntax rules for names, labels and quantities, at the pinned version.

Ported from k8s.io/apimachinery v0.36.3 (pkg/util/validation/validation.go, pkg/api/validate/content,
pkg/api/resource/quantity.go): each function returns the API server's messages, or [] when the value is
valid. They are used where a JSON schema carries only `type: string` (pod templates inside a RayService are
never validated by the API server: KubeRay creates the pods later, and that is where these rules bite).
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

DNS1123_LABEL_MAX = 63
DNS1123_SUBDOMAIN_MAX = 253
DNS1035_LABEL_MAX = 63
LABEL_VALUE_MAX = 63
QUALIFIED_NAME_MAX = 63
PORT_NAME_MAX = 15

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
# resource.Quantity's grammar (quantity.go): sign, digits, optional fraction, optional suffix.
_QUANTITY = re.compile(r"^([+-]?)(\d+(?:\.\d*)?|\.\d+)((?:[KMGTPE]i)|[numkMGTPE]|(?:[eE][+-]?\d+))?$")
_SUFFIX = {"": 1, "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "k": 10**3, "M": 10**6,
           "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30,
           "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}


def dns1123_label(value: str) -> list[str]:
    errs = []
    if len(value) > DNS1123_LABEL_MAX:
        errs.append(f"must be no more than {DNS1123_LABEL_MAX} characters")
    if not _DNS1123_LABEL.match(value):
        errs.append("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and "
                    "must start and end with an alphanumeric character")
    return errs


def dns1123_subdomain(value: str) -> list[str]:
    errs = []
    if len(value) > DNS1123_SUBDOMAIN_MAX:
        errs.append(f"must be no more than {DNS1123_SUBDOMAIN_MAX} characters")
    if not _DNS1123_SUBDOMAIN.match(value):
        errs.append("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
                    "'.', and must start and end with an alphanumeric character")
    return errs


def dns1035_label(value: str) -> list[str]:
    errs = []
    if len(value) > DNS1035_LABEL_MAX:
        errs.append(f"must be no more than {DNS1035_LABEL_MAX} characters")
    if not _DNS1035_LABEL.match(value):
        errs.append("a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
                    "alphabetic character, and end with an alphanumeric character")
    return errs


def qualified_name(value: str) -> list[str]:
    """A label or annotation key: an optional DNS subdomain prefix and '/', then a name of <= 63 characters."""
    prefix, slash, name = value.rpartition("/")
    errs = []
    if slash and not prefix:
        errs.append("prefix part must be non-empty")
    elif slash:
        errs += [f"prefix part {e}" for e in dns1123_subdomain(prefix)]
    if not name:
        errs.append("name part must be non-empty")
    else:
        if len(name) > QUALIFIED_NAME_MAX:
            errs.append(f"name part must be no more than {QUALIFIED_NAME_MAX} characters")
        if not _LABEL_NAME.match(name):
            errs.append("name part must consist of alphanumeric characters, '-', '_' or '.', and must start and "
                        "end with an alphanumeric character")
    return errs


def label_value(value: str) -> list[str]:
    errs = []
    if len(value) > LABEL_VALUE_MAX:
        errs.append(f"must be no more than {LABEL_VALUE_MAX} characters")
    if not _LABEL_VALUE.match(value):
        errs.append("a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or "
                    "'.', and must start and end with an alphanumeric character")
    return errs


def port_number(port: int) -> list[str]:
    return [] if 1 <= port <= 65535 else ["must be between 1 and 65535, inclusive"]


def port_name(name: str) -> list[str]:
    errs = []
    if len(name) > PORT_NAME_MAX:
        errs.append(f"must be no more than {PORT_NAME_MAX} characters")
    if not re.match(r"^[-a-z0-9]+$", name):
        errs.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if not re.search(r"[a-z]", name):
        errs.append("must contain at least one letter (a-z)")
    if "--" in name:
        errs.append("must not contain consecutive hyphens")
    if name and (name[0] == "-" or name[-1] == "-"):
        errs.append("must not begin or end with a hyphen")
    return errs


def env_var_name(name: str) -> list[str]:
    """RelaxedEnvironmentVariableValidation is GA and locked on since v1.34: printable ASCII except '='."""
    if not name:
        return ["environment variable name must be non-empty"]
    if any(ord(c) > 126 or ord(c) < 32 or c == "=" for c in name):
        return ["a valid environment variable name must consist only of printable ASCII characters other than '='"]
    return []


def quantity(value) -> Decimal | None:
    """A resource.Quantity's value, or None if the text is not a quantity."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        try:
            return Decimal(str(value))
        except InvalidOperation:
            return None
    if not isinstance(value, str):
        return None
    match = _QUANTITY.match(value.strip())
    if not match:
        return None
    sign, number, suffix = match.groups()
    try:
        amount = Decimal(number)
        if suffix and suffix[0] in "eE":
            amount *= Decimal(10) ** int(suffix[1:])
        else:
            amount *= Decimal(_SUFFIX[suffix or ""])
    except (InvalidOperation, ValueError, OverflowError):
        return None
    return -amount if sign == "-" else amount
