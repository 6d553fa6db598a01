"""tea's own view of the CPU (release/variant_proof.py tells a real emulation by it)."""

import shutil
import subprocess
import sys

import pytest

from the_edge_agent import cpuid

PRINT_IDENTITY = "from the_edge_agent import cpuid; print(cpuid.identity())"


def identity_under(prefix: list[str]) -> str:
    done = subprocess.run([*prefix, sys.executable, "-c", PRINT_IDENTITY], capture_output=True, text=True,
                          check=True, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": ":".join(sys.path)})
    return done.stdout.strip()


@pytest.mark.skipif(cpuid.identity() is None, reason="no CPU identity on this architecture")
def test_the_identity_is_the_cpu_the_instructions_run_on():
    qemu = shutil.which("qemu-x86_64-static")
    if qemu is None or not cpuid.identity().startswith(("AuthenticAMD", "GenuineIntel")):
        pytest.skip("needs an x86_64 host with qemu-user-static")
    native = identity_under([])
    haswell = identity_under([qemu, "-cpu", "Haswell"])
    westmere = identity_under([qemu, "-cpu", "Westmere"])
    assert native == cpuid.identity() and native.split()[0] in ("AuthenticAMD", "GenuineIntel")
    assert haswell.startswith("GenuineIntel") and "Haswell" in haswell
    assert "Westmere" in westmere and len({native, haswell, westmere}) == 3
