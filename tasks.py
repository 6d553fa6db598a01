"""tea-release tasks — the table of contents. Logic lives in the `release` package.

    invoke release --arch x86_64 --model gemma-3-270m    # the whole pipeline, offline-capable
    invoke test                                          # the full test suite (CI runs this)
"""

from pathlib import Path

from invoke import task

from release import commands, config

BUILD_HELP = {
    "arch": "x86_64|amd64|aarch64|arm64 (default: this machine)",
    "flavor": "python-llm|python|all (default in release.toml: python-llm)",
    "model": "model name from release/release.toml (default in release.toml: gemma-3n-e4b)",
    "packager": "auto|builtin|linuxdeploy|appimagetool (default: auto)",
    "base": "Debian suite of the build root, or host: this machine (default in release.toml: bullseye)",
    "out": "directory for the AppImages, SHA256SUMS and manifest.json (default: dist)",
    "build_dir": "directory for frozen apps, AppDirs, stamps and logs (default: build)",
    "offline": "use only the download cache (also TEA_RELEASE_OFFLINE=1)",
    "require_pins": "refuse to download a model or tool whose sha256 is not pinned",
    "skip": "comma-separated stages to leave out, e.g. variants,systems",
    "force": "comma-separated step names to rerun even if up to date, e.g. freeze-python-llm",
    "asset_size_cap": "split artifacts at or above this many bytes (default in release.toml: under 2 GiB)",
    "dry_run": "only say which steps would run, and why",
}


def build_task(last_stage, doc, name=None):
    """A task that runs the release pipeline up to `last_stage` (up-to-date steps are skipped)."""

    def body(c, arch=None, flavor=None, model=None, packager=None, base=None, out=None, build_dir=None,
             offline=False, require_pins=False, skip=None, force=None, asset_size_cap=None, dry_run=False):
        settings = config.resolve(arch=arch, flavor=flavor, model=model, packager=packager, base=base, out=out,
                                  build_dir=build_dir, offline=offline, require_pins=require_pins,
                                  asset_size_cap=commands.byte_count(asset_size_cap))
        commands.run_pipeline(settings, last_stage, skip=skip, force=force, dry=dry_run)

    body.__doc__ = doc
    return task(commands.one_line_errors(body), name=name or last_stage, help=BUILD_HELP)


deps = build_task("deps", "Install system packages and the build venvs (portable llama-cpp-python).")
model = build_task("model", "Fetch the model into the content-addressed cache and verify its SHA256.")
freeze = build_task("freeze", "Freeze tea with PyInstaller (onedir) and check --version/--impl.")
appdir = build_task("appdir", "Assemble and audit the AppDir (app, model, desktop metadata).")
appimage = build_task("appimage", "Package the AppDir into dist/<name>.AppImage.")
release = build_task("checksums", "The whole release: build, verify, SHA256SUMS and manifest.json.",
                     name="release")

CHECK_HELP = {"path": "an AppImage (default: every AppImage for this machine in --out)",
              "out": "where to look without --path (default: dist)"}


def check_task(name, doc, **checks):
    """A task that runs some of the AppImage checks on --path, or on what `invoke release` left."""

    def body(c, path=None, out=None):
        for appimage in [Path(path)] if path else commands.appimages_in(Path(out or config.DIST_DIR)):
            commands.check_appimage(appimage, **checks)

    body.__doc__ = doc
    return task(commands.one_line_errors(body), name=name, help=CHECK_HELP)


smoke = check_task("smoke", "--version and --impl through the AppImage, with FUSE and with extract-and-run.",
                   functional=False)
functional = check_task("functional", "Run the example agents through the AppImage (LLM: on its bundled model).",
                        smoke=False)


@task(help={"source": "AppImage path or URL, or a release directory / base URL",
            "sums": "SHA256SUMS path or URL the artifact must match",
            "systems": "minimal Debian systems (no Python) to run it in, e.g. bullseye,trixie (default: all pinned)",
            "no_systems": "skip the minimal systems",
            "keyring": "the publisher's public key (file): SHA256SUMS.asc and the AppImage's embedded "
                       "signature must verify against it",
            "cpus": "emulated CPUs, e.g. Westmere,SandyBridge,Haswell (aarch64: cortex-a53,max): on each, the"
                    " llama.cpp CPU variant picked there must run and answer like on this host",
            "update_from": "an older AppImage: its `tea self-update` (and zsync, for a URL) must turn a copy of it "
                           "into exactly this one"})
@commands.one_line_errors
def test_appimage(c, source, sums=None, systems=None, no_systems=False, keyring=None, cpus=None, update_from=None):
    """Is this downloaded AppImage good? Verify checksum (and signatures), then smoke, functional, minimal systems."""
    commands.test_downloaded(source, sums=sums, systems=commands.systems_to_check(systems, no_systems),
                             keyring=Path(keyring) if keyring else None, cpus=cpus,
                             update_from=Path(update_from) if update_from else None)


@task(help={"merge": "SHA256SUMS files to combine (repeatable)", "out": "where to write the result",
            "dist": "the directory to checksum (default: dist)"}, iterable=["merge"])
@commands.one_line_errors
def checksums(c, merge=None, out=None, dist=None):
    """Write dist/SHA256SUMS, or merge the per-arch SHA256SUMS of a CI release job."""
    commands.checksums(Path(dist or config.DIST_DIR), [Path(p) for p in merge or []], Path(out) if out else None)


@task(help={"merge": "manifest.json files to combine (repeatable)", "out": "where to write the result"},
      iterable=["merge"])
@commands.one_line_errors
def manifest(c, merge, out):
    """Merge the per-arch manifest.json files of a CI release job."""
    commands.merge_manifests([Path(p) for p in merge], Path(out))


@task(help={"dist": "the release to check (default: dist)", "arch": "which AppImages (default: this machine's)",
            "keep": "keep the second checkout and its build (printed) to compare by hand"})
@commands.one_line_errors
def reproduce(c, dist=None, arch=None, keep=False):
    """Build dist/'s commit again in a second checkout; its AppImages must be byte-identical (recorded in the manifest)."""
    from release import reproduce as reproducing

    reproducing.reproduce(Path(dist or config.DIST_DIR), arch=arch, keep=keep)


@task(help={"to": "github | dir:PATH", "tag": "release tag, e.g. v0.1.0", "repo": "owner/name (GitHub)",
            "draft": "create the GitHub release as a draft", "dry_run": "only list what would happen",
            "dist": "the directory to publish (default: dist)"})
@commands.one_line_errors
def publish(c, to, tag=None, repo=None, draft=False, dry_run=False, dist=None):
    """Publish dist/ (split parts, SHA256SUMS, manifest) idempotently to GitHub or a directory."""
    commands.publish(Path(dist or config.DIST_DIR), to, tag=tag, repo=repo, draft=draft, dry_run=dry_run)


@task(help={"cache": "also remove the download/model/wheel cache", "out": "dist dir", "build_dir": "build dir"})
@commands.one_line_errors
def clean(c, cache=False, out=None, build_dir=None):
    """Remove build outputs (and with --cache the download cache)."""
    commands.remove_outputs(Path(build_dir or config.BUILD_DIR), Path(out or config.DIST_DIR),
                            config.default_cache_dir() if cache else None)


@task(help={"fast": "only the quick tests (no release run, no slow tests)",
            "pytest_args": "extra arguments for pytest, e.g. '-k download'"})
@commands.one_line_errors
def test(c, fast=False, pytest_args=""):
    """The full test suite: a real offline release (270M model) then pytest, in parallel."""
    from tests import runner  # the test machinery (pytest) is requirements-dev.txt's, needed by this task only

    raise SystemExit(runner.run_test_suite(fast=fast, pytest_args=pytest_args))
