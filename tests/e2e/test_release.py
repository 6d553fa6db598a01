"""The release `invoke test` built: what landed in dist/ and that it behaves as promised."""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from release import appimage as appimage_format
from release.sbom import check_sbom
from release.errors import VerifyError
from release.gpg import SigningKey, checked
from release.signing import appimage_digest, sections, sign_sums, verify_appimage, verify_sums, write_section
from tests.keys import generate_key

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
QUESTION = '{"question":"What is 2+2?"}'


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def squashfs_listing(appimage: Path) -> list[str]:
    offset = appimage_format.elf_end_offset(appimage)
    done = subprocess.run(["unsquashfs", "-o", str(offset), "-l", "-d", "", str(appimage)],
                          capture_output=True, text=True, check=True)
    return [line.lstrip("/") for line in done.stdout.splitlines() if line.strip("/")]


def test_dist_holds_both_flavors_checksums_and_manifest(dist, llm_appimage, plain_appimage):
    done = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=dist, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{llm_appimage.name}: OK" in done.stdout and f"{plain_appimage.name}: OK" in done.stdout
    manifest = json.loads((dist / "manifest.json").read_text())
    records = {a["name"]: a for a in manifest["artifacts"]}
    llm, plain = records[llm_appimage.name], records[plain_appimage.name]
    assert llm["sha256"] == sha256(llm_appimage) and llm["size"] == llm_appimage.stat().st_size
    assert llm["model"]["sha256"] == "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
    assert plain["model"] is None and plain["flavor"] == "python"
    assert re.fullmatch(r"2\.\d+", llm["min_glibc"]) and llm["packager"] == "builtin"
    assert re.fullmatch(r"[0-9a-f]{40}", manifest["commit"]) and manifest["build_seconds"] > 0
    for record in (llm, plain):
        assert record["swi_prolog"]["version"] == "9.2.9" and record["swi_prolog"]["suite"] == "trixie"


def test_both_appimages_carry_swi_prolog_and_janus(llm_appimage, plain_appimage):
    for appimage in (llm_appimage, plain_appimage):
        listing = squashfs_listing(appimage)
        for bundled in ("usr/bin/_internal/swipl/boot.prc", "usr/bin/_internal/swipl/library/clp/clpfd.pl",
                        "usr/bin/_internal/swipl/lib/x86_64-linux/time.so", "usr/bin/_internal/libswipl.so.9"):
            assert bundled in listing, (appimage.name, bundled)
        assert any(line.startswith("usr/bin/_internal/janus_swi/_swipl") for line in listing)


def version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def test_manifest_says_built_in_bullseye_for_glibc_2_31_with_debians_python_311(dist, llm_appimage, plain_appimage):
    records = {a["name"]: a for a in json.loads((dist / "manifest.json").read_text())["artifacts"]}
    for appimage in (llm_appimage, plain_appimage):
        record = records[appimage.name]
        assert version(record["min_glibc"]) <= (2, 31), record
        assert version(record["min_glibcxx"] or "0") <= (3, 4, 28), record
        assert (record["base"], record["build_host"]) == ("bullseye", "build root")
        assert record["distribution"] == "Debian GNU/Linux 11 (bullseye)"
        assert re.fullmatch(r"3\.11\.\d+ \(Debian python3\.11 3\.11\.\d+-\S+, built on bullseye\)", record["python"])


def test_cpu_variants_shipped_and_dropped_with_reasons(dist, llm_appimage):
    """bullseye's gcc 10 cannot build alderlake (AVX-VNNI); sapphirerapids (AMX) is never shipped."""
    variants = {a["name"]: a for a in json.loads((dist / "manifest.json").read_text())["artifacts"]}[
        llm_appimage.name]["cpu_variants"]
    assert {"x64", "sse42", "haswell", "skylakex", "icelake", "zen4"} <= set(variants["shipped"])
    assert "AVX_VNNI" in variants["dropped"]["alderlake"] and "-mavxvnni" in variants["dropped"]["alderlake"]
    assert "SIGILL" in variants["dropped"]["sapphirerapids"]
    assert variants["compiler"].startswith("gcc 10.")
    bundled = {line.rsplit("libggml-cpu-", 1)[1].removesuffix(".so") for line in squashfs_listing(llm_appimage)
               if "/libggml-cpu-" in line}
    assert bundled == set(variants["shipped"])


def test_llm_appimage_answers_from_its_bundled_model(llm_appimage):
    env = {k: v for k, v in os.environ.items() if k != "TEA_MODEL_PATH"}
    done = subprocess.run([str(llm_appimage), "run", "examples/llm/local-chat.yaml", "--input", QUESTION],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    state = json.loads(done.stdout)
    assert state["backend"] == "local" and state["model"] == "gemma-3-270m-q4_k_m.gguf"
    assert state["answer"].strip()


def stored_verbatim(appimage: Path, source: Path, at: int = 64 << 20) -> bool:
    """Whether a squashfs block's worth of source (from offset at, or its middle) lies in the
    AppImage byte for byte: stored uncompressed."""
    with source.open("rb") as handle:
        handle.seek(min(at, source.stat().st_size // 2))
        block = handle.read(128 << 10)
    with appimage.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as image:
        return image.find(block) > 0


def test_llm_appimage_carries_the_model_uncompressed_and_llama(llm_appimage):
    listing = squashfs_listing(llm_appimage)
    assert "usr/share/models/gemma-3-270m-q4_k_m.gguf" in listing
    assert any("libllama" in line for line in listing)
    assert stored_verbatim(llm_appimage, Path(os.environ["TEA_TEST_MODEL"])), "the model is compressed"


def test_only_the_llm_appimage_stores_its_code_uncompressed(llm_appimage, plain_appimage, build_dir):
    """Its model is ~98% of it: raw code costs it little and saves decompressing at every first start."""
    onedir = build_dir / "x86_64" / "{}" / "freeze/dist/tea/_internal/libpython3.11.so.1.0"
    assert stored_verbatim(llm_appimage, Path(str(onedir).format("python-llm")))
    assert not stored_verbatim(plain_appimage, Path(str(onedir).format("python")))


def elf_sections(path: Path) -> set[str] | None:
    """The section names of an ELF file, None for any other file."""
    try:
        return set(sections(path))
    except VerifyError:
        return None


@pytest.mark.parametrize("flavor", ["python", "python-llm"])
def test_no_shipped_library_carries_debug_info(build_dir, flavor):
    """CPython is built with -g, and pip compiles extensions with its flags: unstripped, libpython
    alone carried 25 MB no run reads."""
    onedir = build_dir / "x86_64" / flavor / "freeze/dist/tea"
    elves = {path: names for path in onedir.rglob("*") if path.is_file() and not path.is_symlink()
             if (names := elf_sections(path)) is not None}
    assert len(elves) > 50 and onedir / "_internal/libpython3.11.so.1.0" in elves
    assert [path for path, names in elves.items() if ".debug_info" in names] == []


def traced_start(tea: Path, args: list[str], trace: Path) -> list[str]:
    """The ioctl and openat calls of one run of tea, as `strace -y` prints them."""
    done = subprocess.run(["strace", "-f", "-qq", "-y", "-o", str(trace), "-e", "trace=ioctl,openat",
                           str(tea), *args], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return trace.read_text().splitlines()


def archive_reads(tea: Path, calls: list[str]) -> tuple[int, int]:
    """(isatty asks of the archives modules are imported from, opens of the first): the PYZ archive
    in the tea executable, base_library.zip."""
    archives = (f"<{tea}>", f"<{tea.parent}/_internal/base_library.zip>")
    asks = [call for call in calls if "TCGETS" in call and any(archive in call for archive in archives)]
    opens = [call for call in calls if call.split("(", 1)[0].endswith("openat") and f'"{tea}"' in call]
    return len(asks), len(opens)


needs_strace = pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")


@needs_strace
def test_imports_ask_no_isatty_of_the_archives_they_read(build_dir, tmp_path):
    """On the AppImage's FUSE mount every isatty() is a round trip to its server: a run that imports
    many more modules than `--version` reads the PYZ archive more often and asks no more."""
    tea = build_dir / "x86_64/python/freeze/dist/tea/tea"
    version_asks, version_opens = archive_reads(tea, traced_start(tea, ["--version"], tmp_path / "version"))
    run_asks, run_opens = archive_reads(tea, traced_start(tea, ["run", "examples/parallel.yaml"], tmp_path / "run"))
    assert run_opens > version_opens + 20
    assert run_asks <= version_asks


@needs_strace
@pytest.mark.parametrize("flavor", ["python", "python-llm"])
def test_a_start_imports_nothing_that_only_builds_tea(build_dir, tmp_path, flavor):
    """setuptools in the bundle brought a PyInstaller runtime hook that imported it at every start
    (60 ms of the plain flavor's 140 ms `--version`)."""
    tea = build_dir / "x86_64" / flavor / "freeze/dist/tea/tea"
    calls = traced_start(tea, ["--version"], tmp_path / "trace")
    assert [call for call in calls if "/setuptools/" in call or "/pkg_resources/" in call] == []


def test_apprun_is_tea_itself_and_an_extracted_appdir_finds_its_model(llm_appimage, tmp_path):
    """No shell between the runtime and tea; run straight from the extracted AppDir (no runtime to
    set APPDIR), tea still finds the bundled model (the frozen tea's runtime hook sets APPDIR)."""
    subprocess.run([str(llm_appimage), "--appimage-extract"], cwd=tmp_path, check=True, capture_output=True)
    apprun = tmp_path / "squashfs-root/AppRun"
    assert os.readlink(apprun) == "usr/bin/tea"
    env = {k: v for k, v in os.environ.items() if k not in ("APPDIR", "TEA_MODEL_PATH")}
    done = subprocess.run([str(apprun), "models"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"model: {tmp_path}/squashfs-root/usr/share/models/gemma-3-270m-q4_k_m.gguf" in done.stdout.splitlines()


def test_plain_appimage_has_neither_llama_nor_model(plain_appimage):
    listing = squashfs_listing(plain_appimage)
    assert "usr/bin/tea" in listing and "AppRun" in listing
    assert not [line for line in listing if "llama" in line.lower() or line.endswith(".gguf")]


def test_extract_gives_back_the_exact_appdir(plain_appimage, build_dir, tmp_path):
    subprocess.run([str(plain_appimage), "--appimage-extract"], cwd=tmp_path, check=True, capture_output=True)
    extracted, built = tmp_path / "squashfs-root", build_dir / "x86_64" / "python" / "AppDir"

    def tree(root: Path) -> dict[str, str]:
        return {str(p.relative_to(root)): (f"-> {os.readlink(p)}" if p.is_symlink() else sha256(p))
                for p in root.rglob("*") if p.is_symlink() or p.is_file()}

    assert tree(extracted) == tree(built)


def test_second_release_run_skips_every_step(invoke):
    done = invoke("release", "--arch", "x86_64", "--flavor", "all", "--model", "gemma-3-270m",
                  "--packager", "builtin")
    assert done.returncode == 0, done.stderr
    step_lines = [line for line in done.stderr.splitlines() if re.search(r": (up to date|running|skipped)", line)]
    assert step_lines and all("up to date" in line for line in step_lines), done.stderr


@pytest.fixture(scope="module")
def signed_dist(invoke, throwaway_key, tmp_path_factory) -> Path:
    """The plain flavor built alone in a fresh build dir, signed with a throwaway key."""
    work = tmp_path_factory.mktemp("signed")
    done = invoke("release", "--arch", "x86_64", "--flavor", "python", "--model", "gemma-3-270m",
                  "--packager", "builtin", "--build-dir", str(work / "build"), "--out", str(work / "dist"),
                  "--skip", "smoke,functional,systems", env={"TEA_RELEASE_SIGNING_KEY": throwaway_key[0]})
    assert done.returncode == 0, done.stderr
    assert throwaway_key[0].splitlines()[3] not in done.stdout + done.stderr  # the key is never printed
    return work / "dist"


def test_plain_flavor_built_alone_and_signed_is_the_same_image(signed_dist, plain_appimage, public_keyring):
    """Reproducible: the signed build's unsigned form is byte-identical to the unsigned release's."""
    signed = signed_dist / plain_appimage.name
    record = json.loads((signed_dist / "manifest.json").read_text())["artifacts"][0]
    assert record["unsigned_sha256"] == sha256(plain_appimage) == appimage_digest(signed)
    assert record["signed_by"] == verify_appimage(signed, public_keyring)
    assert sha256(signed) != sha256(plain_appimage)  # only the two signature sections differ
    assert verify_sums(signed_dist / "SHA256SUMS", signed_dist / "SHA256SUMS.asc", public_keyring)


def test_signed_appimage_prints_its_signature(signed_dist, plain_appimage):
    done = subprocess.run([str(signed_dist / plain_appimage.name), "--appimage-signature"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.startswith("-----BEGIN PGP SIGNATURE-----")


def test_test_appimage_with_keyring_accepts_the_signed_release(invoke, signed_dist, plain_appimage, public_keyring):
    done = invoke("test-appimage", str(signed_dist / plain_appimage.name), "--keyring", str(public_keyring),
                  "--no-systems")
    assert done.returncode == 0, done.stderr
    assert "SHA256SUMS: signed by" in done.stderr and "embedded signature by" in done.stderr
    assert "a valid CycloneDX SBOM" in done.stderr and "passed" in done.stderr


def copy_release(dist: Path, target: Path) -> Path:
    target.mkdir()
    for path in dist.iterdir():
        shutil.copy2(path, target / path.name)
    return target


@pytest.mark.parametrize("tamper, code, message", [
    (lambda d, name, key: (d / "SHA256SUMS.asc").unlink(), 6, "has no signature SHA256SUMS.asc"),
    (lambda d, name, key: (d / f"{name}.cdx.json").write_text("{}"), 4, "sha256"),
    (lambda d, name, key: resign_sums(d, generate_key("mallory <m@example.invalid>")[0]), 6, "not in the keyring"),
    (lambda d, name, key: zero_embedded_signature(d / name, key), 6, "carries no embedded signature"),
], ids=["no-sums-signature", "tampered-sbom", "sums-signed-by-another-key", "no-embedded-signature"])
def test_test_appimage_with_keyring_refuses_a_tampered_release(invoke, signed_dist, plain_appimage, public_keyring,
                                                              throwaway_key, tmp_path, tamper, code, message):
    release_dir = copy_release(signed_dist, tmp_path / "release")
    tamper(release_dir, plain_appimage.name, throwaway_key[0])
    done = invoke("test-appimage", str(release_dir / plain_appimage.name), "--keyring", str(public_keyring),
                  "--no-systems")
    assert done.returncode == code, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr and "smoke" not in done.stderr


def resign_sums(release_dir: Path, secret_key: str) -> None:
    sign_sums(release_dir / "SHA256SUMS", checked(SigningKey(secret_key)))


def zero_embedded_signature(appimage: Path, publisher_key: str) -> None:
    """An unsigned AppImage in a release whose SHA256SUMS the publisher did sign (and lists it):
    only the missing embedded signature can give it away."""
    write_section(appimage, sections(appimage)[".sha256_sig"], b"", ".sha256_sig")
    sums = appimage.with_name("SHA256SUMS")
    lines = [line for line in sums.read_text().splitlines() if not line.endswith(f"  {appimage.name}")]
    sums.write_text("\n".join(sorted([*lines, f"{sha256(appimage)}  {appimage.name}"])) + "\n")
    manifest_path = appimage.with_name("manifest.json")  # consistent with the sums, as a publisher's would be
    manifest = json.loads(manifest_path.read_text())
    for record in manifest["artifacts"]:
        if record["name"] == appimage.name:
            record["sha256"] = sha256(appimage)
    manifest_path.write_text(json.dumps(manifest))
    resign_sums(appimage.parent, publisher_key)


def test_dist_sboms_are_listed_valid_and_describe_their_appimage(dist, llm_appimage, plain_appimage):
    listed = (dist / "SHA256SUMS").read_text()
    for appimage in (llm_appimage, plain_appimage):
        path = dist / f"{appimage.name}.cdx.json"
        assert f"  {path.name}\n" in listed
        check_sbom(path, appimage, sha256(appimage))
    names = {c["name"] for c in json.loads((dist / f"{llm_appimage.name}.cdx.json").read_text())["components"]}
    assert {"llama_cpp_python", "llama.cpp", "gemma-3-270m", "the_edge_agent", "tea-appimage-runtime"} <= names
    plain = {c["name"] for c in json.loads((dist / f"{plain_appimage.name}.cdx.json").read_text())["components"]}
    assert "llama_cpp_python" not in plain and "gemma-3-270m" not in plain


def test_sboms_list_the_build_roots_debian_packages_not_this_machines(dist, llm_appimage):
    components = json.loads((dist / f"{llm_appimage.name}.cdx.json").read_text())["components"]
    libc = next(c for c in components if c["name"] == "libc6")
    assert libc["version"].startswith("2.31-"), libc  # bullseye's glibc; this machine has 2.36
    names = {c["name"] for c in components}
    assert "gcc-10" in names and "gcc-12" not in names  # bullseye's compiler built it, not this machine's


def test_manifest_records_provenance(dist):
    manifest = json.loads((dist / "manifest.json").read_text())
    provenance = manifest["provenance"]
    assert provenance["pins"]["sha256"] == hashlib.sha256((REPO / "release/release.toml").read_bytes()).hexdigest()
    assert provenance["base_system"] == {"id": "debian", "version_id": "11", "libc": "glibc 2.31", "machine": "x86_64",
                                         "pretty_name": "Debian GNU/Linux 11 (bullseye)"}  # the build root's
    assert isinstance(provenance["source_date_epoch"], int) and re.fullmatch(r"\d{4}-\d\d-\d\d", provenance["version_date"])
    assert provenance["tools"]["mksquashfs"] and provenance["tools"]["cyclonedx-bom"]
    assert all(a["signed_by"] is None and a["unsigned_sha256"] == a["sha256"] for a in manifest["artifacts"])


def test_appimage_carries_valid_appstream_metadata(plain_appimage, tmp_path):
    subprocess.run([str(plain_appimage), "--appimage-extract"], cwd=tmp_path, check=True, capture_output=True)
    done = subprocess.run(["appstreamcli", "validate-tree", "--no-net", str(tmp_path / "squashfs-root")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout


def test_test_appimage_accepts_the_release_including_minimal_systems(invoke, llm_appimage, dist):
    done = invoke("test-appimage", str(llm_appimage), "--sums", str(dist / "SHA256SUMS"))
    assert done.returncode == 0, done.stderr
    assert "minimal systems" in done.stderr and "passed" in done.stderr
    for suite in ("bullseye", "bookworm", "trixie"):
        assert f"{suite}: smoke+functional+prolog (FUSE), smoke+functional (no FUSE)" in done.stderr


def test_test_appimage_refuses_a_tampered_appimage(invoke, plain_appimage, dist, tmp_path):
    tampered = tmp_path / plain_appimage.name
    data = bytearray(plain_appimage.read_bytes())
    data[len(data) // 2] ^= 0xFF
    tampered.write_bytes(bytes(data))
    tampered.chmod(0o755)
    done = invoke("test-appimage", str(tampered), "--sums", str(dist / "SHA256SUMS"))
    assert done.returncode == 4, done.stderr
    assert "Traceback" not in done.stderr and "sha256" in done.stderr.lower()
    assert "smoke" not in done.stderr


def test_split_release_round_trips_through_publish_and_test_appimage(invoke, tmp_path):
    """Issue 8's done-when, with a 100 MB cap: release → publish to a directory → test-appimage."""
    out, published = tmp_path / "dist", tmp_path / "published"
    done = invoke("release", "--arch", "x86_64", "--flavor", "python-llm", "--model", "gemma-3-270m",
                  "--packager", "builtin", "--build-dir", str(tmp_path / "build"), "--out", str(out),
                  "--skip", "smoke,functional,variants,systems", "--asset-size-cap", "100000000")
    assert done.returncode == 0, done.stderr
    appimage = next(out.glob("tea-python-llm-*.AppImage"))
    record = json.loads((out / "manifest.json").read_text())["artifacts"][0]
    assert len(record["parts"]) >= 3 and all(p["size"] < 100_000_000 for p in record["parts"])
    done = invoke("publish", "--to", f"dir:{published}", "--dist", str(out))
    assert done.returncode == 0, done.stderr
    assert not (published / appimage.name).exists()  # only the parts go out
    assert sorted(p.name for p in published.glob("*.part*")) == [p["name"] for p in record["parts"]]
    done = invoke("test-appimage", str(published), "--no-systems")
    assert done.returncode == 0, done.stderr
    assert f"test-appimage: {appimage.name} passed" in done.stderr


def test_manifest_records_where_each_cpu_variant_was_proven(dist, llm_appimage, plain_appimage):
    records = {a["name"]: a for a in json.loads((dist / "manifest.json").read_text())["artifacts"]}
    proof = records[llm_appimage.name]["cpu_variants"]
    shipped = set(proof["shipped"])
    assert {"x64", "sse42", "sandybridge", "haswell"} <= shipped
    assert shipped == set(proof["native"]) | set(proof["emulated"]) | set(proof["unproven"])
    picked = {name: run["cpu"] for name, run in proof["emulated"].items()}
    assert picked == {"x64": "qemu64", "sse42": "Westmere", "sandybridge": "SandyBridge", "haswell": "Haswell"}
    assert all(run["probe"] == "identical to native" for run in proof["emulated"].values())
    assert set(proof["answers"]) == set(proof["native"])
    assert "cpu_variants" not in records[plain_appimage.name]


def test_test_appimage_runs_the_llm_appimage_on_emulated_cpus(invoke, llm_appimage, dist):
    done = invoke("test-appimage", str(llm_appimage), "--sums", str(dist / "SHA256SUMS"), "--no-systems",
                  "--cpus", "Westmere")
    assert done.returncode == 0, done.stderr
    assert "emulated: sse42 on Westmere" in done.stderr and "passed" in done.stderr
