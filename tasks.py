"""tea-release tasks — the table of contents. Logic lives in the `release` package.

    invoke release --arch x86_64 --model gemma-3-270m    # the whole pipeline, offline-capable
    invoke test                                          # the full test suite (CI runs this)
"""

from pathlib import Path

from invoke import task

from release import cli, config, testing

BUILD_HELP = {
    "arch": "x86_64|amd64|aarch64|arm64 (default: this machine)",
    "flavor": "python-llm|python|all (default: python-llm)",
    "model": "model name from release/release.toml (default: gemma-3n-e4b; offline: gemma-3-270m)",
    "packager": "auto|builtin|linuxdeploy|appimagetool (default: auto)",
    "out": "directory for the AppImages, SHA256SUMS and manifest.json (default: dist)",
    "build_dir": "directory for venvs, frozen apps and AppDirs (default: build)",
    "offline": "use only the download cache (also TEA_RELEASE_OFFLINE=1)",
    "require_pins": "refuse to download a model or tool whose sha256 is not pinned",
    "skip": "comma-separated stages to leave out, e.g. clean-system",
    "force": "comma-separated step names to rerun even if up to date, e.g. freeze-python-llm",
    "asset_size_cap": "split artifacts at or above this many bytes (default in release.toml: under 2 GiB)",
}


def build_task(last_stage, doc, name=None):
    """A task that runs the release pipeline up to `last_stage` (up-to-date steps are skipped)."""

    def body(c, arch=None, flavor=None, model=None, packager="auto", out="dist", build_dir="build",
             offline=False, require_pins=False, skip=None, force=None, asset_size_cap=None):
        settings = config.resolve(arch=arch, flavor=flavor, model=model, packager=packager, out=out,
                                  build_dir=build_dir, offline=offline, require_pins=require_pins,
                                  asset_size_cap=int(asset_size_cap) if asset_size_cap else None)
        cli.run_pipeline(settings, last_stage, skip=skip, force=force)

    body.__doc__ = doc
    return task(cli.one_line_errors(body), name=name or last_stage, help=BUILD_HELP)


deps = build_task("deps", "Install system packages and the build venvs (portable llama-cpp-python).")
model = build_task("model", "Fetch the model into the content-addressed cache and verify its SHA256.")
freeze = build_task("freeze", "Freeze tea with PyInstaller (onedir) and check --version/--impl.")
appdir = build_task("appdir", "Assemble and audit the AppDir (app, model, desktop metadata).")
appimage = build_task("appimage", "Package the AppDir into dist/<name>.AppImage.")
release = build_task("checksums", "The whole release: build, verify, SHA256SUMS and manifest.json.",
                     name="release")

CHECK_HELP = {"path": "an AppImage (default: every AppImage for this machine in --out)",
              "out": "where to look without PATH (default: dist)"}


def check_task(name, doc, **checks):
    """A task that runs some of the AppImage checks on PATH, or on what `invoke release` left."""

    def body(c, path=None, out="dist"):
        for appimage in [Path(path)] if path else cli.appimages_in(Path(out)):
            cli.check_appimage(appimage, **checks)

    body.__doc__ = doc
    return task(cli.one_line_errors(body), name=name, help=CHECK_HELP)


smoke = check_task("smoke", "--version and --impl through the AppImage, with FUSE and with extract-and-run.",
                   functional=False)
functional = check_task("functional", "Run the example agents through the AppImage (LLM: on its bundled model).",
                        smoke=False)


@task(help={"source": "AppImage path or URL, or a release directory / base URL",
            "sums": "SHA256SUMS path or URL the artifact must match",
            "clean": "also run it in a minimal Debian rootfs without Python (default: on)",
            "cpus": "emulated CPUs, e.g. Westmere,SandyBridge,Haswell (aarch64: cortex-a53,max): on each, the"
                    " llama.cpp CPU variant picked there must run and answer like on this host"})
@cli.one_line_errors
def test_appimage(c, source, sums=None, clean=True, cpus=None):
    """Is this downloaded AppImage good? Verify its checksum, then smoke, functional, clean system."""
    cli.test_downloaded(source, sums=sums, clean=clean, cpus=cpus)


@task(help={"merge": "SHA256SUMS files to combine (repeatable)", "out": "where to write the result",
            "dist": "the directory to checksum (default: dist)"}, iterable=["merge"])
@cli.one_line_errors
def checksums(c, merge=None, out=None, dist="dist"):
    """Write dist/SHA256SUMS, or merge the per-arch SHA256SUMS of a CI release job."""
    cli.checksums(Path(dist), [Path(p) for p in merge or []], Path(out) if out else None)


@task(help={"merge": "manifest.json files to combine (repeatable)", "out": "where to write the result"},
      iterable=["merge"])
@cli.one_line_errors
def manifest(c, merge, out):
    """Merge the per-arch manifest.json files of a CI release job."""
    cli.merge_manifests([Path(p) for p in merge], Path(out))


@task(help={"to": "github | dir:PATH", "tag": "release tag, e.g. v0.1.0", "repo": "owner/name (GitHub)",
            "draft": "create the GitHub release as a draft", "dry_run": "only list what would happen",
            "dist": "the directory to publish (default: dist)"})
@cli.one_line_errors
def publish(c, to, tag=None, repo=None, draft=False, dry_run=False, dist="dist"):
    """Publish dist/ (split parts, SHA256SUMS, manifest) idempotently to GitHub or a directory."""
    cli.publish(Path(dist), to, tag=tag, repo=repo, draft=draft, dry_run=dry_run)


@task(help={"cache": "also remove the download/model/wheel cache", "out": "dist dir", "build_dir": "build dir"})
@cli.one_line_errors
def clean(c, cache=False, out="dist", build_dir="build"):
    """Remove build outputs (and with --cache the download cache)."""
    cli.clean(Path(build_dir), Path(out), config.default_cache_dir() if cache else None)


@task(help={"fast": "only the quick tests (no release run, no slow tests)",
            "pytest_args": "extra arguments for pytest, e.g. '-k download'"})
@cli.one_line_errors
def test(c, fast=False, pytest_args=""):
    """The full test suite: a real offline release (270M model) then pytest, in parallel."""
    raise SystemExit(testing.run_test_suite(fast=fast, pytest_args=pytest_args))
