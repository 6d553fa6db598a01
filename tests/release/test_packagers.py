"""External packagers against a real loopback HTTP server serving stand-in tools.

The stand-ins are POSIX sh scripts that record their argv, cwd and environment and write a fake
AppImage where the real tool would (linuxdeploy: $OUTPUT in its cwd; appimagetool: its last
argument), so the test checks exactly what we download, verify and run.
"""

from __future__ import annotations

import hashlib
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from release import packagers, proc
from release.config import load_pins, parse_tools
from release.errors import BuildError, ChecksumError, ConfigError

FAKE_IMAGE = b"\x7fELF fake AppImage\n"


class FileServer:
    """Serves fixed bytes per path on 127.0.0.1 and counts the requests it answered."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files, self.requests = files, 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests += 1
                body = server.files.get(self.path)
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def stand_in(record: Path, out: Path, target: str, exit_code: int = 0) -> bytes:
    """A fake tool: records argv/env/cwd (and whether `out` exists yet), writes `target`, exits."""
    return f"""#!/bin/sh
{{
  for arg in "$@"; do printf 'arg=%s\\n' "$arg"; done
  printf 'APPIMAGE_EXTRACT_AND_RUN=%s\\nARCH=%s\\nOUTPUT=%s\\ncwd=%s\\n' \\
    "$APPIMAGE_EXTRACT_AND_RUN" "$ARCH" "$OUTPUT" "$PWD"
  if [ -e "{out}" ]; then echo "out_during_run=yes"; else echo "out_during_run=no"; fi
}} > "{record}"
for last in "$@"; do :; done
printf '\\177ELF fake AppImage\\n' > {target}
echo "packing... step 1"; echo "packing... step 2" >&2
exit {exit_code}
""".encode()


def read_record(record: Path) -> tuple[list[str], dict[str, str]]:
    args, values = [], {}
    for line in record.read_text().splitlines():
        key, _, value = line.partition("=")
        if key == "arg":
            args.append(value)
        else:
            values[key] = value
    return args, values


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def pin(url: str, data: bytes) -> dict:
    return {"version": "test", "x86_64": {"url": url, "sha256": sha256(data)}}


def toolbox(tools: dict, cache: Path, offline: bool = False) -> packagers.Toolbox:
    """The pins as release.toml would hold them, typed the way a run sees them."""
    return packagers.Toolbox(parse_tools(tools), cache, offline=offline)


@pytest.fixture
def appdir(tmp_path) -> Path:
    root = tmp_path / "build" / "AppDir"
    (root / "usr" / "bin").mkdir(parents=True)
    (root / "AppRun").write_text("#!/bin/sh\n")
    (root / "tea-python.desktop").write_text("[Desktop Entry]\n")
    (root / "tea-python.png").write_bytes(b"\x89PNG")
    return root


@pytest.fixture
def server():
    files: dict[str, bytes] = {}
    running = FileServer(files)
    yield running
    running.close()


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/linuxdeploy-x86_64.AppImage"


def test_linuxdeploy_is_fetched_verified_and_run(tmp_path, appdir, server):
    out = tmp_path / "dist" / "tea-python-1.0-x86_64.AppImage"
    record = tmp_path / "record.txt"
    server.files["/ld"] = tool = stand_in(record, out, '"$OUTPUT"')
    tools = {"linuxdeploy": pin(server.url("/ld"), tool)}

    result = packagers.build_with_tool("linuxdeploy", appdir, out, arch="x86_64",
                                       toolbox=toolbox(tools, tmp_path / "cache"))

    args, seen = read_record(record)
    assert result == out and out.read_bytes() == FAKE_IMAGE
    assert args == ["--appdir", str(appdir), "--output", "appimage",
                    "--desktop-file", str(appdir / "tea-python.desktop"),
                    "--icon-file", str(appdir / "tea-python.png")]
    assert seen["APPIMAGE_EXTRACT_AND_RUN"] == "1" and seen["ARCH"] == "x86_64" and seen["OUTPUT"] == out.name
    assert seen["out_during_run"] == "no"  # produced elsewhere, then renamed into place
    assert Path(seen["cwd"]).parent == out.parent and not Path(seen["cwd"]).exists()
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name]


def test_appimagetool_gets_the_pinned_runtime(tmp_path, appdir, server):
    out = tmp_path / "dist" / "tea-python-1.0-x86_64.AppImage"
    record = tmp_path / "record.txt"
    runtime = b"\x7fELF runtime AI\x02"
    server.files["/at"] = tool = stand_in(record, out, '"$last"')
    server.files["/runtime"] = runtime
    tools = {"appimagetool": pin(server.url("/at"), tool), "appimage-runtime": pin(server.url("/runtime"), runtime)}

    packagers.build_with_tool("appimagetool", appdir, out, arch="x86_64",
                              toolbox=toolbox(tools, tmp_path / "cache"))

    args, seen = read_record(record)
    assert args[0] == "--runtime-file" and Path(args[1]).read_bytes() == runtime
    assert args[2] == str(appdir) and Path(args[3]).name == out.name and Path(args[3]).parent != out.parent
    assert seen["APPIMAGE_EXTRACT_AND_RUN"] == "1" and seen["out_during_run"] == "no"
    assert out.read_bytes() == FAKE_IMAGE


def test_wrong_sha256_refuses_before_running(tmp_path, appdir, server):
    out = tmp_path / "dist" / "x.AppImage"
    record = tmp_path / "record.txt"
    server.files["/ld"] = stand_in(record, out, '"$OUTPUT"')
    tools = {"linuxdeploy": pin(server.url("/ld"), b"what the pin says it should be")}

    with pytest.raises(ChecksumError):
        packagers.build_with_tool("linuxdeploy", appdir, out, arch="x86_64",
                                  toolbox=toolbox(tools, tmp_path / "cache"))
    assert not record.exists() and not out.exists()


def test_tool_failure_is_one_build_error_with_the_log(tmp_path, appdir, server, capsys):
    out = tmp_path / "dist" / "x.AppImage"
    server.files["/ld"] = tool = stand_in(tmp_path / "record.txt", out, '"$OUTPUT"', exit_code=3)
    tools = {"linuxdeploy": pin(server.url("/ld"), tool)}

    with pytest.raises(BuildError) as failure, proc.logging_to(tmp_path / "logs" / "appimage.log"):
        packagers.build_with_tool("linuxdeploy", appdir, out, arch="x86_64",
                                  toolbox=toolbox(tools, tmp_path / "cache"))
    message = str(failure.value)
    assert "\n" not in message and "linuxdeploy failed with exit code 3" in message
    log_file = Path(re.search(r"; log: (\S+)$", message)[1])
    assert "packing... step 2" in log_file.read_text() and "packing... step 2" in capsys.readouterr().err
    assert not out.exists() and list(out.parent.iterdir()) == []


def test_auto_picks_linuxdeploy_when_it_can_be_had_then_offline_from_cache(tmp_path, server):
    server.files["/ld"] = tool = b"#!/bin/sh\n"
    tools = {"linuxdeploy": pin(server.url("/ld"), tool)}
    cache = tmp_path / "cache"
    assert packagers.resolve_packager("auto", arch="x86_64", toolbox=toolbox(tools, cache, offline=False)) == "linuxdeploy"
    served = server.requests
    assert packagers.resolve_packager("auto", arch="x86_64", toolbox=toolbox(tools, cache, offline=True)) == "linuxdeploy"
    assert server.requests == served


def test_auto_with_unreachable_tool_picks_builtin_with_one_line(tmp_path, capsys):
    tools = {"linuxdeploy": {"version": "test", "x86_64": {"url": closed_port_url(), "sha256": "0" * 64}}}
    chosen = packagers.resolve_packager("auto", arch="x86_64", toolbox=toolbox(tools, tmp_path / "cache", offline=False))
    lines = capsys.readouterr().err.strip().splitlines()
    assert chosen == "builtin"
    assert len([line for line in lines if "packager auto" in line]) == 1
    assert "builtin" in lines[-1] and "linuxdeploy" in lines[-1]


def test_auto_offline_and_not_cached_picks_builtin_without_network(tmp_path, server, capsys):
    server.files["/ld"] = tool = b"#!/bin/sh\n"
    tools = {"linuxdeploy": pin(server.url("/ld"), tool)}
    chosen = packagers.resolve_packager("auto", arch="x86_64", toolbox=toolbox(tools, tmp_path / "cache", offline=True))
    assert chosen == "builtin" and server.requests == 0
    assert "offline" in capsys.readouterr().err


def test_auto_without_a_pin_for_the_arch_picks_builtin(tmp_path, capsys):
    tools = {"linuxdeploy": {"version": "test"}}
    assert packagers.resolve_packager("auto", arch="aarch64", toolbox=toolbox(tools, tmp_path, offline=False)) == "builtin"
    assert "[tools.linuxdeploy.aarch64]" in capsys.readouterr().err


def test_an_explicit_packager_is_kept(tmp_path):
    for name in ("builtin", "linuxdeploy", "appimagetool"):
        assert packagers.resolve_packager(name, arch="x86_64", toolbox=toolbox({}, tmp_path, offline=True)) == name


def test_release_toml_pins_every_tool_per_arch():
    tools = load_pins().tools
    for name in ("linuxdeploy", "appimagetool", packagers.RUNTIME_TOOL):
        for arch in ("x86_64", "aarch64"):
            url = tools[name].for_arch(arch).urls[0]
            assert url.startswith("https://") and tools[name].version in url
            assert url.rsplit("/", 1)[-1].find(arch) >= 0
    assert tools["linuxdeploy"].for_arch("x86_64").sha256  # the pin auto relies on for x86_64 CI


def test_builtin_is_not_an_external_tool(tmp_path, appdir):
    with pytest.raises(ConfigError, match="linuxdeploy\\|appimagetool"):
        packagers.build_with_tool("builtin", appdir, tmp_path / "x.AppImage", arch="x86_64",
                                  toolbox=toolbox({}, tmp_path))
