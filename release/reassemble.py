"""Generate `reassemble.sh`: joins split artifacts back together without Python or tea-release.

Published next to the parts, so anyone who downloaded them can run `sh reassemble.sh`: it checks
every part and the joined file with `sha256sum`, then marks it executable. Only POSIX sh and
coreutils (cat, sha256sum, chmod, mv, rm, dirname) are used.
"""

from __future__ import annotations

import re
from pathlib import Path

from .checksums import PLAIN_NAME, SCRIPT_NAME, write_text_atomic
from .errors import ConfigError
_SHA256 = re.compile(r"[0-9a-f]{64}")

_HEADER = """\
#!/bin/sh
# Rebuilds the tea {version} files that this release publishes in parts (GitHub refuses assets of
# 2 GiB or more). Download the parts next to this script, then run: sh reassemble.sh
# Needs only sh and coreutils. Every part and the joined file are checked with sha256sum.
set -eu
cd "$(dirname "$0")"
rebuilt=no

# assemble NAME SHA256 PART...   (the parts' sha256sum lines come on stdin)
assemble() {{
    name=$1 sha=$2
    shift 2
    if [ -f "$name" ] && printf '%s  %s\\n' "$sha" "$name" | sha256sum -c --quiet - >/dev/null 2>&1; then
        echo "$name: already complete"; rebuilt=yes; return 0
    fi
    present=0
    for part in "$@"; do if [ -f "$part" ]; then present=$((present + 1)); fi; done
    if [ "$present" -eq 0 ]; then echo "$name: no parts here, skipped"; return 0; fi
    if [ "$present" -ne "$#" ]; then
        echo "$name: only $present of $# parts are here: download the others" >&2; exit 1
    fi
    if ! sha256sum -c --quiet -; then
        echo "$name: a part is corrupted: download it again" >&2; exit 1
    fi
    cat "$@" > "$name.partial"
    if ! printf '%s  %s\\n' "$sha" "$name.partial" | sha256sum -c --quiet -; then
        rm -f "$name.partial"; echo "$name: the joined file does not match its sha256" >&2; exit 1
    fi
    chmod +x "$name.partial"
    mv -f "$name.partial" "$name"
    echo "$name: reassembled and verified"
    rebuilt=yes
}}

"""

_FOOTER = """
if [ "$rebuilt" = no ]; then echo "no parts found next to this script" >&2; exit 1; fi
"""


def _checked(value: str, pattern: re.Pattern[str], what: str) -> str:
    """Manifest values go into a shell script: accept only plain names and hex digests."""
    if not pattern.fullmatch(value):
        raise ConfigError(f"manifest {what} {value!r} is not safe to put in reassemble.sh")
    return value


def _assemble_call(artifact: dict) -> str:
    parts = artifact["parts"]
    words = [_checked(artifact["name"], PLAIN_NAME, "name"), _checked(artifact["sha256"], _SHA256, "sha256")]
    words += [_checked(part["name"], PLAIN_NAME, "part name") for part in parts]
    lines = "".join(f"{_checked(part['sha256'], _SHA256, 'sha256')}  {part['name']}\n" for part in parts)
    return f"assemble {' '.join(words)} <<'EOF'\n{lines}EOF\n"


def write_reassemble_script(dist_dir: Path, manifest: dict) -> Path | None:
    """dist_dir/reassemble.sh for the split artifacts of manifest; None (and no stale script) if none."""
    target = Path(dist_dir) / SCRIPT_NAME
    split = [artifact for artifact in manifest.get("artifacts", []) if artifact.get("parts")]
    if not split:
        target.unlink(missing_ok=True)
        return None
    body = "".join(_assemble_call(artifact) for artifact in split)
    script = _HEADER.format(version=manifest.get("version", "")) + body + _FOOTER
    return write_text_atomic(target, script, mode=0o755)
