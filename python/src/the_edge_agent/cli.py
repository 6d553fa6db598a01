"""The `tea` command line.

`--version` and `--impl` are answered before argparse or anything heavy is imported: they are what
packaging smoke tests call, and they must work even where llama_cpp, jinja2 or yaml would not load.
Imports are absolute because PyInstaller freezes this file as the `__main__` script.
"""

from __future__ import annotations

import sys

IMPLEMENTATION = "python"
FAST_FLAGS = {"--version", "--impl"}
CPU_VARIANT_PROBE = "__check-cpu-variant"  # hidden: the child process of variant_guard's check


def fast_answer(argv: list[str]) -> str | None:
    """`tea X.Y.Z`, `python` or `tea X.Y.Z (python)` when argv holds only those flags."""
    if not argv or not set(argv) <= FAST_FLAGS:
        return None
    from the_edge_agent.version import package_version

    version = f"tea {package_version()}"
    if "--version" in argv and "--impl" in argv:
        return f"{version} ({IMPLEMENTATION})"
    return version if "--version" in argv else IMPLEMENTATION


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    answer = fast_answer(argv)
    if answer is not None:
        print(answer)
        return 0
    if argv[:1] == [CPU_VARIANT_PROBE]:
        from the_edge_agent.variant_guard import probe

        return probe(argv[1:])
    from the_edge_agent.commands import dispatch

    return dispatch(argv)


if __name__ == "__main__":
    sys.exit(main())
