"""The exit codes of every `kuberay-llm` command: one table, so a script can tell a typo from a timeout.

| code | meaning                                                                                   |
|------|-------------------------------------------------------------------------------------------|
| 0    | ok: valid, healthy, served, deleted                                                       |
| 1    | failed: invalid manifests, a failed deployment (with its cause), a smoke test that failed |
| 2    | usage: bad arguments or environment variables, unknown overlay, input a tool rejected     |
| 3    | unavailable: the cluster cannot be reached or refuses us, a pinned tool is missing        |
| 4    | pending: timed out waiting, or (`status`) not healthy yet                                 |

argparse's own errors (a missing argument) are usage errors: 2.
"""

OK = 0
FAILED = 1
USAGE = 2
UNAVAILABLE = 3
PENDING = 4

EPILOG = "exit codes: 0 ok, 1 failed, 2 usage, 3 cluster or tool unavailable, 4 timed out / not healthy yet"
