"""What the freeze step leaves in the bundle: no path of the machine that built it (issue 24)."""

from __future__ import annotations

import base64
import hashlib
import subprocess
import sys
import zipfile
from importlib.metadata import distributions
from pathlib import Path

from release.freeze import drop_install_origins

NAME, VERSION = "builder_path_probe", "1.2.3"


def wheel(directory: Path) -> Path:
    """A real wheel of a one-module distribution, written here (no build backend needed)."""
    files = {f"{NAME}/__init__.py": b"",
             f"{NAME}-{VERSION}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {NAME}\nVersion: {VERSION}\n".encode(),
             f"{NAME}-{VERSION}.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = "".join(f"{name},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},"
                     f"{len(data)}\n" for name, data in files.items()) + f"{NAME}-{VERSION}.dist-info/RECORD,,\n"
    path = directory / f"{NAME}-{VERSION}-py3-none-any.whl"
    directory.mkdir(parents=True)
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in {**files, f"{NAME}-{VERSION}.dist-info/RECORD": record.encode()}.items():
            archive.writestr(name, data)
    return path


def test_pip_install_origins_leave_the_bundle(tmp_path):
    """pip records the path it installed from in direct_url.json (RECORD lists it): the checkout for
    the app, the download cache for the llama.cpp and janus-swi wheels. Two checkouts then built
    different bytes, and every user got the builder's paths."""
    source = wheel(tmp_path / "some-builders-cache" / "wheels")
    bundle = tmp_path / "bundle"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target", str(bundle),
                    str(source)], check=True, capture_output=True)
    leaking = [path.name for path in bundle.rglob("*") if path.is_file() and str(source.parent).encode()
               in path.read_bytes()]
    assert leaking == ["direct_url.json"]  # what the fix is for

    assert drop_install_origins(bundle) == [f"{NAME}-{VERSION}.dist-info"]
    assert not [path for path in bundle.rglob("*") if path.is_file() and str(tmp_path).encode() in path.read_bytes()]
    record = (bundle / f"{NAME}-{VERSION}.dist-info" / "RECORD").read_text()
    assert "direct_url.json" not in record and f"{NAME}/__init__.py," in record
    found, = distributions(path=[str(bundle)])
    assert found.version == VERSION and drop_install_origins(bundle) == []
