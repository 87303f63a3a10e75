"""Ray's own Grafana dashboards, generated from the pinned Ray at build time (`make dashboards`), never copied.

Ray builds its dashboards from panel definitions in ray/dashboard/modules/metrics/dashboards/*_panels.py through
ray.dashboard.modules.metrics.grafana_dashboard_factory (the same code a Ray head uses to write
/tmp/ray/session_latest/metrics/grafana/dashboards/). This calls those generators of the Ray in ./.venv (the
version pyproject.toml pins, the one the image runs) and writes each dashboard, minified, where the
grafana-dashboards component and the chart read it:
  manifests/components/grafana-dashboards/dashboards/<name>.json  (configMapGenerator files)
  charts/ray-llm/dashboards/<name>.json                           (.Files.Glob)
Both directories are build outputs (.gitignore). The factory's RAY_GRAFANA_* overrides are cleared so the
output depends on the Ray version only.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

# ConfigMap key / file name -> the factory function of the pinned Ray that builds it.
DASHBOARDS = {
    "ray-serve-llm": "generate_serve_llm_grafana_dashboard",
    "ray-serve": "generate_serve_grafana_dashboard",
    "ray-serve-deployment": "generate_serve_deployment_grafana_dashboard",
    "ray-cluster": "generate_default_grafana_dashboard",
}


def generate() -> dict[str, str]:
    for key in [k for k in os.environ if k.startswith("RAY_GRAFANA_")]:
        del os.environ[key]
    from ray.dashboard.modules.metrics import grafana_dashboard_factory as factory

    out = {}
    for name, function in DASHBOARDS.items():
        content, _uid = getattr(factory, function)()
        out[name] = json.dumps(json.loads(content), separators=(",", ":"), sort_keys=True) + "\n"
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", action="append", required=True, type=Path, help="directory to write (repeatable)")
    args = parser.parse_args(argv)
    dashboards = generate()
    for directory in args.out:
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob("*.json"):
            if stale.stem not in dashboards:
                stale.unlink()
        for name, text in dashboards.items():
            (directory / f"{name}.json").write_text(text)
    print(f"wrote {len(dashboards)} dashboards of Ray {__import__('ray').__version__} to "
          + ", ".join(str(d) for d in args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
