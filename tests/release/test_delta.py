"""The release side of delta updates, built for real: the padded runtime, the squashfs layout
(mksquashfs -sort), the update information and its place before the signature, the .zsync and
block map files and how they are listed, published and read back by Debian's zsync client.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from release import appimage as appimage_module
from release import config, delta, deps, hosts, layout, publish, signing, split
from release.appimage import ALIGNMENT, elf_end_offset, pad_elf
from release.artifacts import Kind
from release.errors import ConfigError, VerifyError
from release.finalize import FinalizeStep
from release.package import AppImageStep
from release.pipeline import Context
from release.squashfs import make_squashfs, sort_lines
from test_appimage_format import make_appdir, runtime  # noqa: F401
from tests.release_server import ReleaseServer
from the_edge_agent.update.blockmap import BLOCK_SIZE, BlockMap, block_digest

MODEL = os.urandom(40 * BLOCK_SIZE + 777)
LIBRARIES = [os.urandom(200_000) * 2 for _ in range(3)]  # stable across "releases"


def blocks(path: Path) -> list[bytes]:
    data = path.read_bytes()
    return [block_digest(data[start:start + BLOCK_SIZE]) for start in range(0, len(data), BLOCK_SIZE)]


# --- the runtime ---------------------------------------------------------------------------------


def test_the_runtime_ends_on_the_block_grid_of_every_updater(runtime):
    assert ALIGNMENT % BLOCK_SIZE == 0 and ALIGNMENT % 4096 == 0  # the block map's, and zsync's
    assert runtime.stat().st_size % ALIGNMENT == 0
    assert elf_end_offset(runtime) == runtime.stat().st_size


def test_padding_moves_only_the_section_table(runtime, tmp_path):
    """pad_elf on an unpadded layout: same sections at the same offsets, the table at the new end."""
    from elftools.elf.elffile import ELFFile

    def sections(path: Path) -> list[tuple[str, int, int]]:
        with path.open("rb") as handle:
            return [(s.name, s["sh_offset"], s["sh_size"]) for s in ELFFile(handle).iter_sections()]

    grown = shutil.copyfile(runtime, tmp_path / "grown")
    size = pad_elf(grown, 3 * ALIGNMENT)
    assert size == grown.stat().st_size == elf_end_offset(grown) and size % (3 * ALIGNMENT) == 0
    assert sections(grown) == sections(runtime)
    assert pad_elf(grown, ALIGNMENT) == size  # already on the grid: unchanged
    grown.chmod(0o755)
    assert subprocess.run([str(grown), "--appimage-version"], capture_output=True).returncode == 1  # runs; no image


def test_padding_refuses_an_elf_whose_table_is_not_at_its_end(runtime, tmp_path):
    tail = tmp_path / "tail"
    tail.write_bytes(runtime.read_bytes() + b"trailing")
    with pytest.raises(VerifyError, match="not at the end"):
        pad_elf(tail)


# --- the squashfs layout -------------------------------------------------------------------------


SMALL_STABLE = [os.urandom(1500) for _ in range(120)]  # enough to fill fragment blocks on their own
SOURCES = [os.urandom(1500) for _ in range(100)]      # tea's package files: small, in fragments too
OTHER = os.urandom(200_000)


def tea_appdir(root: Path, tea: bytes, edited: bool = False) -> Path:
    """The shape of the real AppDir: a model, stable libraries and small files, the frozen tea, tea's
    package files and metadata; `edited`: one of tea's sources and its RECORD changed (a new line)."""
    make_appdir(root, MODEL)
    internal = root / "usr/bin/_internal"
    files = {f"lib{index}.so": library for index, library in enumerate(LIBRARIES)}
    files.update({f"zstable/{index}.py": data for index, data in enumerate(SMALL_STABLE)})
    files.update({f"the_edge_agent/m{index}.py": data for index, data in enumerate(SOURCES)})
    files["the_edge_agent-0.1.0.dist-info/RECORD"] = b"a\n"
    if edited:
        files["the_edge_agent/m10.py"] = SOURCES[10] + b"# a new line\n"
        files["the_edge_agent-0.1.0.dist-info/RECORD"] = b"a, with another hash\n"
    for name, data in files.items():
        (internal / name).parent.mkdir(parents=True, exist_ok=True)
        (internal / name).write_bytes(data)
    (root / "usr/bin/tea").write_bytes(tea)
    (root / "usr/share/zz").mkdir()
    (root / "usr/share/zz/other.bin").write_bytes(OTHER)  # after the model in directory order
    (root / "tea.desktop").write_text("[Desktop Entry]\n")
    return root


def test_sort_lines_name_what_matches_and_let_directories_speak_for_their_files(tmp_path):
    root = tea_appdir(tmp_path / "AppDir", b"tea")
    (root / "usr/share/with space.gguf").write_text("x")
    assert sort_lines(root, layout.LAYOUT) == [
        "tea.desktop -2",
        "usr/bin/tea -1",
        "usr/bin/_internal/the_edge_agent -2",
        "usr/bin/_internal/the_edge_agent-0.1.0.dist-info -2",
        "usr/share/models/x.gguf 32767",
    ]


def package(runtime: Path, appdir: Path, out: Path, priorities=layout.LAYOUT) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    image = make_squashfs(appdir, out.with_suffix(".building"), offset=runtime.stat().st_size, priorities=priorities)
    return appimage_module.write_runtime_over(runtime, image, out)


def test_a_code_change_leaves_the_model_and_every_stable_byte_in_place(runtime, tmp_path):
    tea = os.urandom(600_000) * 2  # incompressible: its bytes can be found in the image
    old = package(runtime, tea_appdir(tmp_path / "old", tea), tmp_path / "old.AppImage")
    new = package(runtime, tea_appdir(tmp_path / "new", tea[:500_000] + b"x" + tea[500_000:], edited=True),
                  tmp_path / "new.AppImage")
    def offsets(path: Path) -> list[int]:  # the model, the stable files (incompressible: found raw), tea
        data = path.read_bytes()
        return [data.find(content[:4096]) for content in (MODEL, *LIBRARIES, OTHER, tea)]

    *stable, tea_at = offsets(old)
    model_at = stable[0]
    assert runtime.stat().st_size < model_at < runtime.stat().st_size + 4096  # first, after the superblock
    assert offsets(new) == [*stable, tea_at] and max(stable) < tea_at  # every stable byte before tea
    before, after = blocks(old), blocks(new)
    differing = [index for index, digest in enumerate(after) if index >= len(before) or before[index] != digest]
    head = [index for index in differing if index * BLOCK_SIZE < model_at]
    # the runtime's .sqfs_sha256 and the superblock (sizes, table offsets) change; then nothing before
    # the changed byte of tea: its sources and metadata come after it, the fragments they fill too
    assert head == [runtime.stat().st_size // BLOCK_SIZE - 1, runtime.stat().st_size // BLOCK_SIZE]
    assert min(differing[2:]) == (tea_at + 500_000) // BLOCK_SIZE, differing
    assert len(differing) - 2 <= (len(after) * BLOCK_SIZE - tea_at - 500_000) // BLOCK_SIZE + 1


def test_without_the_layout_the_same_change_shifts_everything_after_the_executable(runtime, tmp_path):
    """The measurement the layout answers: in directory order usr/bin/tea comes before the libraries."""
    tea = os.urandom(600_000) * 2
    old = package(runtime, tea_appdir(tmp_path / "old", tea), tmp_path / "old.AppImage", priorities=())
    new = package(runtime, tea_appdir(tmp_path / "new", tea[:500_000] + b"x" + tea[500_000:]),
                  tmp_path / "new.AppImage", priorities=())
    before, after = blocks(old), blocks(new)
    assert sum(before[i] != digest for i, digest in enumerate(after) if i < len(before)) > len(after) // 2


def test_a_bigger_runtime_keeps_the_model_on_the_grid(runtime, tmp_path):
    bigger = shutil.copyfile(runtime, tmp_path / "bigger")
    pad_elf(bigger, runtime.stat().st_size + ALIGNMENT)
    appdir = tea_appdir(tmp_path / "AppDir", os.urandom(100_000))
    old = package(runtime, appdir, tmp_path / "old.AppImage")
    new = package(bigger, appdir, tmp_path / "new.AppImage")
    have = set(blocks(old))
    start = new.read_bytes().find(MODEL[:4096])
    model_blocks = range(-(-start // BLOCK_SIZE), (start + len(MODEL)) // BLOCK_SIZE)
    assert len(model_blocks) >= 39 and all(blocks(new)[index] in have for index in model_blocks)


# --- update information, before the signature -------------------------------------------------------


def step_context(tmp_path: Path, runtime: Path, appdir: Path, key=None) -> tuple[Context, object]:
    settings = config.resolve(arch="x86_64", flavor="python-llm", model="gemma-3-270m", packager="builtin",
                              out=tmp_path / "dist", build_dir=tmp_path / "build")
    settings = dataclasses.replace(settings, signing_key=key)
    ctx = Context(settings, host=hosts.Host(settings))  # this machine: no build root needed here
    deps.BuildHostStep().run(ctx)
    ctx.register(Kind.WHEEL, tmp_path / "llama.whl", digest="0" * 64, cpu_variants={"shipped": [], "dropped": {}})
    ctx.register(Kind.PACKAGER, runtime, name="builtin")
    ctx.register(Kind.MODEL, appdir / "usr/share/models/x.gguf", digest="0" * 64)
    ctx.register(Kind.APPDIR, appdir, flavor="python-llm", min_glibc="2.36", min_glibcxx=None)
    ctx.register(Kind.ONEDIR, appdir / "usr/bin", flavor="python-llm", swi_prolog=None)
    return ctx, settings.flavors[0]


def test_the_appimage_step_embeds_the_update_information_under_the_signature(runtime, tmp_path, signing_key,
                                                                           public_keyring):
    ctx, flavor = step_context(tmp_path, runtime, tea_appdir(tmp_path / "AppDir", b"tea"), signing_key)
    AppImageStep(flavor).run(ctx)
    made = ctx.artifacts.get(Kind.APPIMAGE, flavor.name).path
    expected = "gh-releases-zsync|fabceolin|the_edge_agent|latest|tea-python-llm-[0-9]*-x86_64.AppImage.zsync"
    assert ctx.settings.update_information(flavor) == expected
    printed = subprocess.run([str(made), "--appimage-updateinformation"], capture_output=True, text=True)
    assert printed.stdout == expected + "\n" and layout.update_information(made) == expected
    assert signing.verify_appimage(made, public_keyring) == signing_key.fingerprint
    assert made.read_bytes().find(MODEL[:4096]) < runtime.stat().st_size + 4096


def test_update_information_in_release_toml_is_checked(tmp_path):
    base = config.PINS_FILE.read_text()
    for bad, why in (("gh-releases-zsync|a|b|c", "gh-releases-zsync|OWNER"), ("bintray|x", "zsync|URL"),
                     ("zsync|{version}", "only placeholder"), ("zsync|" + "x" * 1100, "at most 1023")):
        pins = tmp_path / "release.toml"
        pins.write_text(base.replace(base[base.index("update_information = "):].splitlines()[0],
                                     f'update_information = "{bad}"'))
        with pytest.raises(ConfigError, match=why.replace("|", r"\|")):
            config.load_pins(pins)
    pins.write_text(base.replace(base[base.index("update_information = "):].splitlines()[0], ""))
    assert config.load_pins(pins).update_information == ""


# --- .zsync and block map ----------------------------------------------------------------------


def test_zsync_file_is_reproducible_and_names_the_appimage(runtime, tmp_path):
    made = package(runtime, tea_appdir(tmp_path / "AppDir", b"tea"), tmp_path / "dist/x.AppImage")
    first = delta.write_zsync(made).read_bytes()
    os.utime(made, (1, 1))
    second = delta.write_zsync(made).read_bytes()
    assert first == second
    header = first.split(b"\n\n", 1)[0].decode().splitlines()
    assert "Filename: x.AppImage" in header and "URL: x.AppImage" in header
    assert f"Length: {made.stat().st_size}" in header and not any(line.startswith("MTime") for line in header)
    assert delta.without_mtime(b"zsync: 0.6.2\nMTime: now\nURL: u\n\n\nMTime: x") == b"zsync: 0.6.2\nURL: u\n\n\nMTime: x"


def test_block_map_describes_the_file_and_the_parts_the_checksums_step_makes(tmp_path):
    made = tmp_path / "x.AppImage"
    made.write_bytes(os.urandom(5 * BLOCK_SIZE + 10))
    cap = made.stat().st_size // 2
    found = BlockMap.from_json(delta.write_blockmap(made, cap).read_text())
    parts = split.split_if_needed(made, cap)
    assert [(p.name, p.size) for p in found.parts] == [(p.name, p.size) for p in parts]
    assert found.sha256 == hashlib.sha256(made.read_bytes()).hexdigest() and found.blocks == 6
    assert all(found.digest(i) == digest for i, digest in enumerate(blocks(made)))
    assert BlockMap.from_json(delta.write_blockmap(made, 1 << 40).read_text()).parts == ()


def test_delta_and_checksums_steps_list_publish_and_serve_the_update_files(runtime, tmp_path):
    ctx, flavor = step_context(tmp_path, runtime, tea_appdir(tmp_path / "AppDir", b"tea"))
    AppImageStep(flavor).run(ctx)
    (ctx.settings.dist_dir / "sbom.cdx.json").write_text("{}")
    ctx.register(Kind.SBOM, ctx.settings.dist_dir / "sbom.cdx.json", flavor=flavor.name)
    delta.DeltaStep(flavor).run(ctx)
    FinalizeStep((flavor,)).run(ctx)
    dist = ctx.settings.dist_dir
    made = ctx.artifacts.get(Kind.APPIMAGE, flavor.name).path
    record = json.loads((dist / "manifest.json").read_text())["artifacts"][0]
    sums = (dist / "SHA256SUMS").read_text()
    for kind, name in ((Kind.ZSYNC, made.name + ".zsync"), (Kind.BLOCKMAP, made.name + ".blockmap")):
        sha = hashlib.sha256((dist / name).read_bytes()).hexdigest()
        assert record[kind.value] == {"name": name, "sha256": sha} and f"{sha}  {name}\n" in sums
    first = publish.publish(dist, f"dir:{tmp_path / 'mirror'}", tag="v0.1.0")
    assert {made.name + ".zsync", made.name + ".blockmap"} <= set(first.uploaded)
    assert publish.publish(dist, f"dir:{tmp_path / 'mirror'}", tag="v0.1.0").uploaded == []


@pytest.mark.skipif(shutil.which("zsync") is None, reason="Debian's zsync client is not installed")
def test_debians_zsync_client_fetches_only_what_changed(runtime, tmp_path):
    tea = os.urandom(600_000) * 2
    old = package(runtime, tea_appdir(tmp_path / "old", tea), tmp_path / "old/x.AppImage")
    new = package(runtime, tea_appdir(tmp_path / "new", tea[:500_000] + b"x" + tea[500_000:], edited=True),
                  tmp_path / "dist/x.AppImage")
    delta.write_zsync(new)
    with ReleaseServer(new.parent) as server:
        done = subprocess.run(["zsync", "-q", "-i", str(old), "-o", str(tmp_path / "out"), server.url + "x.AppImage.zsync"],
                              cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out").read_bytes() == new.read_bytes()
    assert 0 < server.sent["x.AppImage"] < 0.2 * new.stat().st_size
