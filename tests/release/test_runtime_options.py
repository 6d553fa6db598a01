"""The runtime's type2-runtime parity, run for real: TARGET_APPIMAGE, portable home/config, the
section printers, APPIMAGE_EXTRACT_AND_RUN and extract patterns (AppImage/type2-runtime's contract).
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

from release import gpg, signing
from test_appimage_format import appdir, appimage, build_appimage, make_appdir, runtime  # noqa: F401
from test_runtime import reported, run, tmpdir_env, tree  # noqa: F401
from test_signing import move_section


# ------------------------------------------------------------------------------------------------
# TARGET_APPIMAGE: a runtime operates on another AppImage (the spec's MUST for static runtimes)


def test_target_appimage_runs_the_target_from_a_bare_runtime(runtime, appimage, tmpdir_env, tmp_path):
    env = {**tmpdir_env, "TARGET_APPIMAGE": str(appimage), "APP_EXIT": "4"}
    result = run(runtime, "an arg", env=env, cwd=tmp_path)  # alone, the runtime has no squashfs
    assert result.returncode == 4, result.stderr
    seen = reported(result.stdout)
    assert seen["APPIMAGE"] == [str(appimage)] and seen["ARGV0"] == [str(appimage)]
    assert seen["ARG"] == ["an arg"] and seen["TOOL"] == ["ok"]


def test_target_appimage_applies_to_the_options(runtime, appimage, tmpdir_env, tmp_path):
    env = {**tmpdir_env, "TARGET_APPIMAGE": str(appimage)}
    assert int(run(runtime, "--appimage-offset", env=env).stdout) == runtime.stat().st_size
    assert run(runtime, "--appimage-extract", "usr/bin/tool", env=env, cwd=tmp_path).returncode == 0
    assert (tmp_path / "squashfs-root/usr/bin/tool").read_text() == "#!/bin/sh\necho TOOL=ok\n"


def test_without_target_the_bare_runtime_refuses_with_one_line(runtime, tmpdir_env):
    result = run(runtime, env=tmpdir_env)
    assert result.returncode == 1 and "no squashfs image" in result.stderr
    assert len(result.stderr.splitlines()) == 1


# ------------------------------------------------------------------------------------------------
# Portable home and config


@pytest.mark.parametrize("kind, variable", [("home", "HOME"), ("config", "XDG_CONFIG_HOME")])
def test_portable_option_creates_the_directory_and_runs_use_it(appimage, tmpdir_env, tmp_path, kind, variable):
    created = run(appimage, f"--appimage-portable-{kind}", env=tmpdir_env)
    portable = Path(f"{appimage}.{kind}")
    assert created.returncode == 0, created.stderr
    assert portable.is_dir() and stat.S_IMODE(portable.stat().st_mode) == 0o700
    assert created.stderr.strip() == f"Portable {kind} directory created at {portable}"
    for mode in ((), ("--appimage-extract-and-run",)):
        result = run(appimage, *mode, env=tmpdir_env, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert reported(result.stdout)[variable] == [str(portable)]
        assert result.stderr.strip() == f"Setting ${variable} to {portable}"
    other = "XDG_CONFIG_HOME" if variable == "HOME" else "HOME"
    assert reported(result.stdout)[other] == [tmpdir_env.get(other, "")]


def test_portable_option_on_an_existing_directory_fails_with_one_line(appimage, tmpdir_env):
    Path(f"{appimage}.home").mkdir()
    result = run(appimage, "--appimage-portable-home", env=tmpdir_env)
    assert result.returncode == 1
    assert result.stderr.startswith("appimage: cannot create the portable home directory") and \
        len(result.stderr.splitlines()) == 1


needs_root = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                                reason="needs root and setpriv to run as another user")


VICTIM, ATTACKER = 65534, 65533


def run_as(uid: int, image: Path, shared: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    """A run of image by uid, extracted (FUSE as another user needs a desktop), with its own cache."""
    cache = shared / f"cache-{uid}"  # extract-and-run's per-user cache must be that user's own
    cache.mkdir(mode=0o700, exist_ok=True)
    os.chown(cache, uid, uid)
    env = {"PATH": os.environ["PATH"], "HOME": "/nonexistent", "TMPDIR": str(shared),
           "XDG_CACHE_HOME": str(cache), "APPIMAGE_EXTRACT_AND_RUN": "1"}
    return run(image, env=env, prefix=("setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"))


@pytest.fixture
def shared_folder(runtime, tmp_path):  # noqa: F811
    """A folder every user may write to, sticky like /tmp, holding the victim's AppImage."""
    shared = Path(tempfile.mkdtemp(prefix="appimage-user-"))
    shared.chmod(0o1777)
    image = build_appimage(runtime, make_appdir(tmp_path / "AppDir", b"m"), shared / "T.AppImage")
    os.chown(image, VICTIM, VICTIM)
    yield shared, image
    shutil.rmtree(shared)


@needs_root
def test_a_portable_home_the_user_cannot_write_is_ignored(shared_folder, tmp_path):
    """As type2-runtime: only a writable <file>.home becomes $HOME (here: root's, run as nobody),
    and the run says why it is not used."""
    shared, image = shared_folder
    Path(f"{image}.home").mkdir(mode=0o755)
    result = run_as(VICTIM, image, shared, tmp_path)
    assert result.returncode == 0, result.stderr
    assert reported(result.stdout)["HOME"] == ["/nonexistent"]
    assert result.stderr == f"appimage: not using {image}.home as $HOME: it belongs to uid 0, not to this user\n"


@needs_root
@pytest.mark.parametrize("planted", ["attacker-0777", "attacker-0755", "victim-group-writable",
                                     "victim-in-an-open-folder", "symlink-to-attacker"])
def test_a_portable_config_another_user_can_write_is_never_used(shared_folder, tmp_path, planted):
    """Issue 24's N3: another local user makes <file>.config (with swi-prolog/init.pl) next to the
    victim's AppImage in a shared folder; the victim's run must not take its settings from there."""
    shared, image = shared_folder
    config, folder = Path(f"{image}.config"), shared
    if planted == "victim-in-an-open-folder":  # the victim's own, where anybody may swap it out
        folder = shared / "open"
        folder.mkdir()
        folder.chmod(0o777)
        image = Path(shutil.move(image, folder / image.name))
        config = Path(f"{image}.config")
    target = shared / "attackers" if planted == "symlink-to-attacker" else config
    (target / "swi-prolog").mkdir(parents=True)
    (target / "swi-prolog/init.pl").write_text(":- shell('touch PWNED').\n")
    owner, mode = {"attacker-0777": (ATTACKER, 0o777), "attacker-0755": (ATTACKER, 0o755),
                   "victim-group-writable": (VICTIM, 0o770), "symlink-to-attacker": (ATTACKER, 0o777)
                   }.get(planted, (VICTIM, 0o700))
    os.chown(target, owner, owner)
    target.chmod(mode)
    if planted == "symlink-to-attacker":
        config.symlink_to(target)
    result = run_as(VICTIM, image, shared, tmp_path)
    assert result.returncode == 0, result.stderr
    assert reported(result.stdout)["XDG_CONFIG_HOME"] == [""]
    notices = result.stderr.splitlines()
    if planted == "symlink-to-attacker":
        assert notices == []  # not a directory: ignored as before
    else:
        assert len(notices) == 1 and notices[0].startswith(f"appimage: not using {config} as $XDG_CONFIG_HOME: ")


@needs_root
def test_the_users_own_private_portable_config_is_used(shared_folder, tmp_path):
    shared, image = shared_folder
    config = Path(f"{image}.config")
    config.mkdir(mode=0o700)
    os.chown(config, VICTIM, VICTIM)
    result = run_as(VICTIM, image, shared, tmp_path)
    assert reported(result.stdout)["XDG_CONFIG_HOME"] == [str(config)], result.stderr
    assert result.stderr == f"Setting $XDG_CONFIG_HOME to {config}\n"


def test_a_file_named_like_the_portable_home_is_ignored(appimage, tmpdir_env, tmp_path):
    Path(f"{appimage}.home").write_text("not a directory")
    result = run(appimage, env=tmpdir_env, cwd=tmp_path)
    assert reported(result.stdout)["HOME"] == [tmpdir_env["HOME"]] and result.stderr == ""


# ------------------------------------------------------------------------------------------------
# The section printers


def write(appimage: Path, name: str, data: bytes) -> None:
    section = signing.sections(appimage)[name]
    signing.write_section(appimage, section, data, name)


@pytest.mark.parametrize("option, section", [
    ("--appimage-signature", ".sha256_sig"),
    ("--appimage-updateinformation", ".upd_info"),
    ("--appimage-updateinfo", ".upd_info"),
])
def test_section_options_print_the_text_up_to_the_first_nul(appimage, tmpdir_env, option, section):
    assert run(appimage, option, env=tmpdir_env).stdout == "\n"  # nothing embedded yet
    write(appimage, section, b"gh-releases-zsync|o|r|latest|x.zsync\0left over")
    result = run(appimage, option, env=tmpdir_env)
    assert result.returncode == 0 and result.stdout == "gh-releases-zsync|o|r|latest|x.zsync\n"


@pytest.mark.parametrize("option, section", [("--appimage-signature", ".sha256_sig"),
                                             ("--appimage-updateinfo", ".upd_info")])
def test_a_section_outside_the_elf_part_is_not_printed(appimage, tmpdir_env, option, section):
    """Issue 30's S3 on the runtime's side: a section header pointing into the squashfs."""
    end, size = signing.elf_end_offset(appimage), signing.sections(appimage)[section].size
    move_section(appimage, section, end - size + 1)
    result = run(appimage, option, env=tmpdir_env)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == f"appimage: the {section} section of {appimage} lies outside its ELF part\n"


def rename_section(appimage: Path, old: bytes, new: bytes) -> None:
    """Rename a section in place, in the section name table (same length)."""
    names = signing.sections(appimage)[".shstrtab"]
    data = bytearray(appimage.read_bytes())
    at = data.index(old + b"\0", names.offset)
    data[at:at + len(old)] = new
    appimage.write_bytes(bytes(data))


def test_section_option_finds_the_section_by_its_exact_name(appimage, tmpdir_env):
    write(appimage, ".sig_key", b"decoy")
    write(appimage, ".sha256_sig", b"the signature")
    rename_section(appimage, b".sig_key", b".sha256s")  # a prefix of the real name, earlier in the table
    assert run(appimage, "--appimage-signature", env=tmpdir_env).stdout == "the signature\n"


def test_section_option_on_a_runtime_without_the_section_fails_with_one_line(appimage, tmpdir_env):
    rename_section(appimage, b".sha256_sig", b".xxxxxx_xxx")
    result = run(appimage, "--appimage-signature", env=tmpdir_env)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.strip() == f"appimage: {appimage} has no .sha256_sig section"


def test_signature_option_prints_a_real_embedded_signature(appimage, tmpdir_env, signing_key):
    with gpg.signer(signing_key) as signer:
        signing.sign_appimage(appimage, signer)
    printed = run(appimage, "--appimage-signature", env=tmpdir_env).stdout
    assert printed.startswith("-----BEGIN PGP SIGNATURE-----") and printed.endswith("-----END PGP SIGNATURE-----\n\n")


# ------------------------------------------------------------------------------------------------
# APPIMAGE_EXTRACT_AND_RUN and extract patterns


@pytest.mark.parametrize("value, extracted", [("1", True), ("yes", True), ("0", True), ("", False)])
def test_any_non_empty_extract_and_run_value_extracts(appimage, tmpdir_env, tmp_path, value, extracted):
    env = {**tmpdir_env, "APPIMAGE_EXTRACT_AND_RUN": value, "APPIMAGE_SHARED_MOUNT": "0"}  # mounted: .mount_*
    result = run(appimage, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    where = Path(reported(result.stdout)["APPDIR"][0]).name
    assert where.startswith("extracted_" if extracted else ".mount_")


@pytest.mark.parametrize("pattern, expected", [
    ("usr/share", ["usr", "usr/share", "usr/share/doc", "usr/share/doc/README", "usr/share/models",
                   "usr/share/models/x.gguf"]),
    ("usr/*/doc", ["usr", "usr/share", "usr/share/doc", "usr/share/doc/README"]),
    ("*.gguf", []),  # a wildcard does not cross '/'
    ("usr/share/doc/README", ["usr", "usr/share", "usr/share/doc", "usr/share/doc/README"]),
])
def test_extract_patterns_have_type2_runtime_semantics(appimage, appdir, tmpdir_env, tmp_path, pattern, expected):
    result = run(appimage, "--appimage-extract", pattern, env=tmpdir_env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    extracted = tree(tmp_path / "squashfs-root")
    assert sorted(extracted) == expected
    original = tree(appdir)
    assert all(extracted[path] == original[path] for path in expected if original[path][0] != "dir")


def test_informational_options_are_listed_in_the_help(appimage, tmpdir_env):
    usage = run(appimage, "--appimage-help", env=tmpdir_env).stdout
    for option in ("--appimage-signature", "--appimage-updateinfo", "--appimage-portable-home",
                   "--appimage-portable-config", "TARGET_APPIMAGE"):
        assert option in usage


@pytest.fixture
def fresh_image(runtime, tmp_path) -> Path:
    """An AppImage in a directory of its own (for tests that create siblings of it)."""
    (tmp_path / "own").mkdir()
    return build_appimage(runtime, make_appdir(tmp_path / "own" / "AppDir", b"m"), tmp_path / "own" / "T.AppImage")


def test_portable_dirs_sit_next_to_the_real_file_not_a_symlink(fresh_image, tmpdir_env, tmp_path):
    link = tmp_path / "link.AppImage"
    link.symlink_to(fresh_image)
    assert run(link, "--appimage-portable-config", env=tmpdir_env).returncode == 0
    assert Path(f"{fresh_image}.config").is_dir() and not Path(f"{link}.config").exists()
    assert sorted(os.listdir(fresh_image.parent)) == ["AppDir", "T.AppImage", "T.AppImage.config"]
