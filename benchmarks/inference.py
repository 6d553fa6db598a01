"""Benchmark: model load + first token and tokens/s, model inside the AppImage vs a plain GGUF file.

    python benchmarks/inference.py [--appimage FILE] [--onedir-tea FILE] [--model FILE]
                                   [--baseline-appimage FILE] [--tokens 64] [--threads N] [--runs 5]

The same frozen program both ways: `<AppImage> run agent.yaml` (runtime, FUSE mount, the bundled
model found under $APPDIR) vs the onedir `tea run agent.yaml` that the AppImage was made from, with
TEA_MODEL_PATH at the plain cached GGUF. The AppImage is timed as a first run (it mounts the image
itself: the model is read through FUSE) and back-to-back (right after another run, whose
lingering shared mount still has the model's pages); --baseline-appimage adds another AppImage
(e.g. an older release's) for before/after in one run. The agent (written to a temp dir) asks the same prompt
twice at temperature 0: max_tokens=1 first, so that node's time (tea's own "[1] ... done in"
line) is import of llama_cpp + model load + prompt + first token; then max_tokens=--tokens, whose
time gives tokens/s (llama-cpp-python reuses the prompt's KV cache, so this is mostly generation).
One unrecorded warm-up round first fills the page cache for both.
"""

from __future__ import annotations

import argparse
import json
import os
import re
from pathlib import Path

from _common import (alternate, first_and_back_to_back, header, input_flags, load_average, ratio, require,
                     scratch_dir, timed_run)

PROMPT = "List the first forty prime numbers, one per line."
NODE_TIME = re.compile(r"\[(\d+)\] \S+ done in ([0-9.]+)s")


def agent_yaml(tokens: int, threads: int | None) -> str:
    nodes = "".join(f"""
  - name: {name}
    uses: llm.chat
    with:
      prompt: "{PROMPT}"
      temperature: 0
      seed: 1
      max_tokens: {max_tokens}
    output:
      {name}_usage: "{{{{ action_result.usage }}}}"
      {name}_text: "{{{{ action_result.content }}}}"
""" for name, max_tokens in (("first", 1), ("generate", tokens)))
    threads_line = f"\n    n_threads: {threads}" if threads else ""
    return f"""name: inference-bench
settings:
  llm:
    backend: local
    n_ctx: 512{threads_line}
nodes:{nodes}
edges:
  - from: __start__
    to: first
  - from: first
    to: generate
  - from: generate
    to: __end__
"""


def runner(command: list[str], env: dict[str, str], texts: set[str]):
    """A measure: wall/CPU of the whole run, load+first token, tokens/s; the text goes into `texts`."""
    def measure() -> dict[str, float]:
        times, done = timed_run([*command, "--input", "{}"], env=env)
        node_seconds = {int(step): float(seconds) for step, seconds in NODE_TIME.findall(done.stderr)}
        state = json.loads(done.stdout)
        texts.add(state["generate_text"])
        return {**times, "first": node_seconds[1], "tok/s": state["generate_usage"]["completion_tokens"] / node_seconds[2],
                "tokens": state["generate_usage"]["completion_tokens"]}
    return measure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    input_flags(parser, "appimage", "onedir_tea", "model")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, help="llama.cpp threads (default: tea's, all usable cores)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--baseline-appimage", type=Path, help="also time this AppImage")
    args = parser.parse_args()
    require(args, "appimage", "onedir_tea", "model")
    env = {k: v for k, v in os.environ.items() if k != "TEA_MODEL_PATH"}
    texts: set[str] = set()
    with scratch_dir("tea-inference-bench-") as scratch:
        agent = scratch / "agent.yaml"
        agent.write_text(agent_yaml(args.tokens, args.threads))
        header(f"load + first token and {args.tokens}-token generation", args.runs)
        results = alternate(variants(args, agent, env, texts, scratch), args.runs, warmup=1)
    report(results, texts)


def variants(args: argparse.Namespace, agent: Path, env: dict[str, str], texts: set[str], scratch: Path) -> dict:
    def appimage_run(image: Path, extra: dict[str, str]):
        return runner([str(image), "run", str(agent)], {**env, **extra}, texts)

    chosen = first_and_back_to_back(scratch, "AppImage", lambda extra: appimage_run(args.appimage, extra))
    chosen["plain GGUF"] = runner([str(args.onedir_tea), "run", str(agent)], {**env, "TEA_MODEL_PATH": str(args.model)},
                                  texts)
    if args.baseline_appimage:
        chosen |= first_and_back_to_back(scratch, "baseline AppImage",
                                         lambda extra: appimage_run(args.baseline_appimage, extra))
    return chosen


def report(results: dict[str, dict[str, float]], texts: set[str]) -> None:
    for name, result in results.items():
        print(f"{name:32s} load+first token {result['first']:6.2f} s  {result['tok/s']:6.1f} tok/s "
              f"({result['tokens']:.0f} tokens)  whole run {result['wall']:6.2f} s  CPU {result['cpu']:6.2f} s")
    print(f"generated text identical in every run: {'yes' if len(texts) == 1 else f'NO ({len(texts)} variants)'}; "
          f"load average after: {load_average()}")
    plain = results["plain GGUF"]
    for name in [name for name in results if "AppImage" in name]:
        ratio(f"load + first token, {name} / plain", results[name]["first"] / plain["first"], 1.15, at_most=True)
        ratio(f"tokens/s, {name} / plain", results[name]["tok/s"] / plain["tok/s"], 0.95, at_most=False)


if __name__ == "__main__":
    main()
