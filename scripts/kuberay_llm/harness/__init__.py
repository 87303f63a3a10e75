"""Talk to a real cluster: apply an overlay, wait for its RayService to serve, smoke-test it, diagnose it.

One module per command (`apply`, `wait`, `smoke`, `status`, `diagnose`, `delete`); `kube` is the small
HTTP layer over the official `kubernetes` client's configuration, `health` turns a RayService, its pods
and their events into a verdict, `settings` holds every named timeout.
"""
