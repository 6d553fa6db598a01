"""Benchmark: a Prolog agent through the AppImage vs a plain agent through the same AppImage.

    python benchmarks/prolog.py [--appimage FILE] [--runs 10]

The Prolog example (examples/prolog/simple-prolog-agent.yaml: three Prolog nodes) pays for starting
the bundled SWI-Prolog, loading tea's Prolog side and the preloaded libraries (clpfd among them);
examples/hello.yaml (no Prolog) is the baseline of starting the AppImage and running an agent at all.
Goal: the Prolog agent within 3x of the baseline (SWI-Prolog's start-up stays well under a second).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from _common import REPO, alternate, header, load_average, ratio, timed_run

from release import config

AGENTS = {"hello.yaml (no Prolog)": (REPO / "examples" / "hello.yaml", {}),
          "simple-prolog-agent.yaml": (REPO / "examples" / "prolog" / "simple-prolog-agent.yaml", {"value": 21})}


def plain_appimage() -> Path:
    settings = config.resolve(flavor="python", build_dir=REPO / "build", out=REPO / "dist")
    return settings.appimage_path(settings.flavors[0])


def agent_runner(appimage: Path, agent: Path, inputs: dict):
    return lambda: timed_run([str(appimage), "run", "-q", str(agent), "-i", json.dumps(inputs)])[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--appimage", type=Path, default=plain_appimage(), help="default %(default)s")
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    if not args.appimage.exists():
        raise SystemExit(f"no AppImage at {args.appimage}: build it with `invoke release --flavor python`, "
                         f"or pass --appimage")
    header(f"tea run through {args.appimage.name}", args.runs)
    results = alternate({name: agent_runner(args.appimage, *agent) for name, agent in AGENTS.items()},
                        args.runs, warmup=1)
    for name, result in results.items():
        print(f"{name:26s} {result['wall'] * 1000:7.1f} ms  CPU {result['cpu'] * 1000:7.1f} ms")
    print(f"load average after: {load_average()}")
    baseline, prolog = (results[name]["wall"] for name in AGENTS)
    ratio("Prolog agent / plain agent", prolog / baseline, 3.0, at_most=True)


if __name__ == "__main__":
    main()
