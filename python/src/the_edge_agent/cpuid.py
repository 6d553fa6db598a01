"""The CPU as this process's own instructions see it (x86 CPUID, arm64 MIDR_EL1), not /proc/cpuinfo.

Under `qemu-<arch>-static -cpu MODEL` /proc/cpuinfo still describes the host, while the emulated
instructions describe MODEL. `tea doctor --json` reports this identity so that a caller can tell
that the emulation really took effect, even when MODEL offers llama.cpp the same features as the
host (an AVX2-only host emulating Haswell). A few bytes of machine code run from an anonymous
executable mapping; where that is refused (a hardened kernel), the identity is simply unknown.
"""

from __future__ import annotations

import ctypes
import mmap
import platform
import struct

# void cpuid(uint32_t leaf, uint32_t subleaf, uint32_t out[4])  (System V AMD64 ABI)
_X86_64_CPUID = bytes.fromhex(
    "53"          # push rbx (callee-saved; cpuid writes it)
    "4989d0"      # mov r8, rdx
    "89f8"        # mov eax, edi
    "89f1"        # mov ecx, esi
    "0fa2"        # cpuid
    "418900"      # mov [r8], eax
    "41895804"    # mov [r8+4], ebx
    "41894808"    # mov [r8+8], ecx
    "4189500c"    # mov [r8+12], edx
    "5b"          # pop rbx
    "c3"          # ret
)
# uint64_t midr(void): mrs x0, midr_el1; ret (Linux and qemu-user emulate this read for user space)
_AARCH64_MIDR = struct.pack("<II", 0xD5380000, 0xD65F03C0)


def _function(code: bytes, restype, *argtypes):
    """`code` mapped executable, as a ctypes function; the mapping lives as long as the function."""
    memory = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    memory.write(code)
    address = ctypes.addressof(ctypes.c_char.from_buffer(memory))
    function = ctypes.CFUNCTYPE(restype, *argtypes)(address)
    function._memory = memory  # keep the code mapped
    return function


def _x86_64_identity() -> str:
    cpuid = _function(_X86_64_CPUID, None, ctypes.c_uint32, ctypes.c_uint32, ctypes.POINTER(ctypes.c_uint32 * 4))

    def registers(leaf: int) -> tuple[int, int, int, int]:
        out = (ctypes.c_uint32 * 4)()
        cpuid(leaf, 0, ctypes.byref(out))
        return tuple(out)

    _, ebx, ecx, edx = registers(0)
    vendor = struct.pack("<III", ebx, edx, ecx).decode("ascii", "replace")
    brand = b""
    if registers(0x80000000)[0] >= 0x80000004:
        brand = b"".join(struct.pack("<IIII", *registers(leaf)) for leaf in (0x80000002, 0x80000003, 0x80000004))
    name = brand.rstrip(b"\0").decode("ascii", "replace").strip()
    signature = registers(1)[0]  # family, model, stepping
    return f"{vendor} {name} (signature {signature:#x})"


def _aarch64_identity() -> str:
    return f"MIDR_EL1 {_function(_AARCH64_MIDR, ctypes.c_uint64)():#018x}"


def identity() -> str | None:
    """Vendor, brand and signature (x86_64) or MIDR_EL1 (aarch64); None where it cannot be read."""
    reader = {"x86_64": _x86_64_identity, "aarch64": _aarch64_identity}.get(platform.machine())
    if reader is None:
        return None
    try:
        return reader()
    except (OSError, ValueError, AttributeError):
        return None
