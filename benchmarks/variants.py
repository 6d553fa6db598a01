"""Benchmark: prompt-eval and generation speed of llama.cpp's CPU variants on this machine.

    python benchmarks/variants.py [--variants zen4,icelake,haswell] [--runs 5] [--threads N]
                                  [--prompt-tokens 128] [--tokens 64]

What a variant costs or saves here: each variant in turn (forced with TEA_GGML_CPU_VARIANT, one
process per measurement, as tea loads it) evaluates the same prompt in one batch, then generates
greedily; the speeds are llama.cpp's own counters (llama_perf_context). Ratios are against the first
variant. This is how the cost of not shipping a variant (e.g. the AMX one) is stated: measure the
variant that runs instead, on the machine that would have run the dropped one.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile

from _common import alternate, header, input_flags, require

MEASURE = r"""
import json, sys
from pathlib import Path
from the_edge_agent.actions.llm_local import import_llama
from the_edge_agent.variant_guard import select_cpu_backend

model, threads, prompt_tokens, tokens = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
llama_cpp = import_llama()
select_cpu_backend(Path(llama_cpp.__file__).parent, model, threads)
llama = llama_cpp.Llama(model_path=str(model), n_ctx=prompt_tokens + tokens + 8, n_batch=prompt_tokens,
                        n_threads=threads, verbose=False)
text = "The edge agent runs YAML agents on a local model, offline, on any Linux machine. " * 64
prompt = llama.tokenize(text.encode())[:prompt_tokens]
for count, _ in enumerate(llama.generate(prompt, temp=0.0), 1):
    if count == tokens:
        break
perf = llama_cpp.llama_perf_context(llama.ctx)
llama.close()
print(json.dumps({"prompt tok/s": perf.n_p_eval / perf.t_p_eval_ms * 1000, "gen tok/s": perf.n_eval / perf.t_eval_ms * 1000}))
"""


def measure(args: argparse.Namespace, variant: str, home: str):
    env = {**os.environ, "TEA_GGML_CPU_VARIANT": variant, "PYTHONPATH": str(args.app_dir), "HOME": home,
           "XDG_CACHE_HOME": f"{home}/.cache"}
    command = [str(args.venv / "bin" / "python"), "-c", MEASURE, str(args.model), str(args.threads),
               str(args.prompt_tokens), str(args.tokens)]

    def run() -> dict[str, float]:
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"variant {variant} failed (exit {done.returncode}): {done.stderr.strip()[-300:]}")
        return json.loads(done.stdout)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default="zen4,icelake,skylakex,haswell,sandybridge",
                        help="comma-separated, the first is the baseline (default %(default)s)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--prompt-tokens", type=int, default=128)
    parser.add_argument("--tokens", type=int, default=64)
    input_flags(parser, "venv", "app_dir", "model")
    args = parser.parse_args()
    require(args, "venv", "app_dir", "model")
    variants = [name.strip() for name in args.variants.split(",") if name.strip()]
    header(f"CPU variants, {args.prompt_tokens}-token prompt + {args.tokens} tokens, {args.threads} threads", args.runs)
    with tempfile.TemporaryDirectory(prefix="tea-bench-variants-") as home:
        results = alternate({name: measure(args, name, home) for name in variants}, args.runs, warmup=1)
    baseline = results[variants[0]]
    for name, speeds in results.items():
        print(f"{name:<14} " + "  ".join(f"{key} {value:7.1f} ({value / baseline[key]:.2f}x)"
                                          for key, value in speeds.items()))


if __name__ == "__main__":
    main()
