"""What each invoke task does, kept out of tasks.py so it is importable and testable without invoke."""

from __future__ import annotations

import functools
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from invoke.exceptions import Exit

from . import arch as arches
from . import appimage, audit, config, emulation, finalize, hosts, log, plan, proc, verify
from . import checksums as checksums_module
from .errors import ConfigError, ReleaseError, VerifyError
from .pipeline import Context, dry_run, run


def one_line_errors(task_body: Callable) -> Callable:
    """User-fixable failures end a task with one line and their exit code, never a traceback."""

    @functools.wraps(task_body)
    def wrapper(*args, **kwargs):
        try:
            return task_body(*args, **kwargs)
        except ReleaseError as error:
            raise Exit(f"error: {error}", code=error.exit_code) from None
        except KeyboardInterrupt:
            raise Exit("interrupted", code=130) from None

    return wrapper


def byte_count(value: str | None) -> int | None:
    """A size flag: digits, optionally with _ separators (2_000_000_000)."""
    if value is None:
        return None
    try:
        return int(str(value).replace("_", ""))
    except ValueError:
        raise ConfigError(f"not a number of bytes: {value!r}") from None


def systems_to_check(systems: str | None, skip: bool) -> tuple[str, ...]:
    """--systems (default: every pinned suite) unless --no-systems."""
    return () if skip else config.suite_list(systems) if systems else config.load_pins().systems.suites


def split_list(value: str | None) -> frozenset[str]:
    return frozenset(item.strip() for item in (value or "").split(",") if item.strip())


def run_pipeline(settings: config.Settings, last_stage: str, *, skip: str | None = None,
                 force: str | None = None, dry: bool = False) -> Context:
    """Run (or with `dry`, only report) the release up to `last_stage`."""
    steps = plan.steps_until(settings, last_stage, skip=split_list(skip))
    forced = split_list(force)
    unknown = forced - {step.name for step in steps}
    if unknown:
        raise ConfigError(f"--force names no step of this run: {', '.join(sorted(unknown))}; steps: "
                          f"{', '.join(step.name for step in steps)}")
    ctx = Context(settings, force=forced, host=hosts.select(settings))
    if dry:
        for name, reason in dry_run(steps, ctx):
            log.info(f"{name}: {'would run (' + reason + ')' if reason else 'up to date'}")
        return ctx
    if last_stage not in ("deps", "model"):
        emulation.prepare(settings.arch, settings.cache_dir, settings.pins.systems.suites[0])
    ctx = run(steps, ctx)
    log.info(f"{last_stage}: finished; outputs in {settings.dist_dir if last_stage == 'checksums' else settings.build_dir}")
    return ctx


def check_runnable_appimage(path: Path) -> Path:
    """Refuse what cannot be an AppImage for this host before running anything."""
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    with path.open("rb") as handle:
        head = handle.read(11)
    if head[:4] != b"\x7fELF" or head[8:11] != b"AI\x02":
        raise VerifyError(f"{path}: not a type-2 AppImage (no ELF header with the AI\\x02 magic)")
    if not path.stat().st_mode & 0o111:
        raise ConfigError(f"{path}: not executable; run: chmod +x {path}")
    emulation.prepare(audit.elf_machine(path), config.default_cache_dir(), config.load_pins().systems.suites[0])
    return path


def appimages_in(dist: Path) -> list[Path]:
    """The AppImages in dist/ this machine runs natively (the ones `invoke release` just made)."""
    found = sorted(dist.glob(f"*-{arches.host_arch()}.AppImage"))
    if not found:
        raise ConfigError(f"no {arches.host_arch()} AppImage in {dist}/: run `invoke release` first, or pass --path")
    return found


def manifest_record(path: Path) -> tuple[dict, str]:
    """The AppImage's record in the manifest.json beside it (empty if none), and the version it
    must report: the manifest's, else this checkout's."""
    manifest = finalize.read_dist_manifest(path.parent)
    entry = next((a for a in manifest["artifacts"] if a["name"] == path.name), {})
    return entry, manifest.get("version") or config.project_version()


def is_llm_appimage(path: Path, entry: dict) -> bool:
    return entry.get("flavor", "python-llm" if "-llm-" in path.name else "python") == "python-llm"


def has_prolog(entry: dict) -> bool:
    """Whether the AppImage bundles SWI-Prolog: its manifest says; without a record, every flavor does."""
    return entry.get("swi_prolog", "unknown") is not None


def check_appimage(path: Path, *, smoke: bool = True, functional: bool = True, systems: tuple[str, ...] = (),
                   cache_dir: Path | None = None, cpus: list[str] | None = None) -> None:
    from . import systems as minimal_systems

    check_runnable_appimage(path)
    entry, version = manifest_record(path)
    llm = is_llm_appimage(path, entry)
    if cpus and not llm:
        raise ConfigError(f"--cpus checks the llama.cpp CPU variants: {path.name} has none (give the LLM AppImage)")
    model_filename = (entry.get("model") or {}).get("filename") if llm else None
    if smoke:
        log.info(f"smoke {path.name}: {verify.smoke(path, version)}")
    if functional:
        prolog = has_prolog(entry)
        result = (verify.functional_llm(path, model_filename, prolog=prolog) if llm
                  else verify.functional_plain(path, prolog=prolog))
        log.info(f"functional {path.name}: {result}")
        if cpus:
            emulated_cpus(path, cpus, result["answer"])
    if systems:
        product, min_glibc = appimage.glibc_floor(path)
        checked = minimal_systems.check_on_systems(
            cache_dir or config.default_cache_dir(), audit.elf_machine(path), systems, path, version,
            product=product, min_glibc=min_glibc, model_filename=model_filename, llm=llm, prolog=has_prolog(entry))
        log.info(f"minimal systems {path.name}: " + "; ".join(f"{suite}: {', '.join(ran)}"
                                                           for suite, ran in checked.items()))


def emulated_cpus(path: Path, cpus: list[str], reference: str) -> None:
    """On each of `cpus` (qemu-user models) the variant ggml picks there must answer like on this host."""
    from . import variant_proof

    with tempfile.TemporaryDirectory(prefix="tea-cpus-") as workdir:
        record = variant_proof.prove_appimage(path, cpus, reference, Path(workdir))
    log.info(f"emulated CPUs {path.name}: {variant_proof.describe_proof(record)}")


def remove_outputs(build_dir: Path, dist_dir: Path, cache_dir: Path | None) -> None:
    for target in (build_dir, dist_dir, cache_dir):
        if target is not None and target.exists():
            shutil.rmtree(target)
            log.info(f"removed {target}")


def test_downloaded(source: str, *, sums: str | None, systems: tuple[str, ...], keyring: Path | None = None,
                    cpus: str | None = None, update_from: Path | None = None) -> None:
    """Fetch (if a URL), verify against SHA256SUMS/manifest (refuse on any mismatch) — and with a
    keyring the signatures of SHA256SUMS and of the AppImage — then check it; with `update_from`,
    check that updating that older AppImage gives exactly this one."""
    from . import artifact_source, signing, update_check

    if not artifact_source.is_url(source) and not Path(source).exists():
        raise ConfigError(f"no such file or directory: {source}")
    if update_from is not None:
        check_runnable_appimage(update_from)
    cache_dir = config.default_cache_dir()
    with tempfile.TemporaryDirectory(prefix="tea-test-appimage-") as workdir, \
            proc.logging_to(cache_dir / "logs" / "test-appimage.log"):
        path = artifact_source.resolve_artifact(source, sums=sums, cache_dir=cache_dir, workdir=Path(workdir),
                                                keyring=keyring)
        if keyring is not None:
            log.info(f"{path.name}: embedded signature by {signing.verify_appimage(path, keyring)}")
        check_sbom_beside(path)
        check_appimage(path, systems=systems, cache_dir=cache_dir, cpus=sorted(split_list(cpus)))
        if update_from is not None:
            release = artifact_source.split_spec(source, None)[0]
            whole = path.name in checksums_module.read_sums(Path(workdir) / "SHA256SUMS") \
                if artifact_source.is_url(release) else False
            update_check.check_update(update_from, path, release, whole_published=whole, work=Path(workdir))
    log.info(f"test-appimage: {path.name} passed")


def check_sbom_beside(appimage: Path) -> None:
    """The SBOM the release lists for this AppImage (already checked against SHA256SUMS) must
    describe exactly these bytes."""
    from . import sbom
    from .download import sha256_file

    path = sbom.sbom_path(appimage)
    if path.is_file():
        sbom.check_sbom(path, appimage, sha256_file(appimage))
        log.info(f"{path.name}: a valid CycloneDX SBOM of {appimage.name}")


def checksums(dist: Path, merge: list[Path], out: Path | None) -> None:
    """Write or merge SHA256SUMS, then sign it when TEA_RELEASE_SIGNING_KEY is set."""
    from . import gpg, signing

    key = gpg.key_from_environment()
    if merge:
        target = out or dist / "SHA256SUMS"
        checksums_module.merge_sums(merge, target)
    else:
        names = checksums_module.published_names(finalize.read_dist_manifest(dist))
        if not names:
            raise ConfigError(f"{dist}: no manifest.json with artifacts; run `invoke release` first")
        target = checksums_module.write_sums(dist, names)
    signature = signing.sign_sums(target, key)
    log.info(f"wrote {target}" + (f" and {signature.name} (key {key.fingerprint})" if signature else ""))


def merge_manifests(inputs: list[Path], out: Path) -> None:
    """The release's manifest, and beside it the reassemble.sh of all its split files (each build's
    covers only its own; `invoke checksums --merge` then lists this one)."""
    from . import reassemble

    merged = checksums_module.merge_manifests(inputs, out)
    script = reassemble.write_reassemble_script(merged.parent, checksums_module.read_manifest(merged))
    log.info(f"wrote {merged}" + (f" and {script}" if script else ""))


def publish(dist: Path, target: str, *, tag: str | None, repo: str | None, draft: bool, dry_run: bool) -> None:
    from . import publish as publishing

    if target == "github" and not tag:
        raise ConfigError("publishing to github needs --tag, e.g. --tag v" + config.project_version())
    report = publishing.publish(dist, target, tag=tag, repo=repo, draft=draft, dry_run=dry_run)
    log.info(f"publish: {report}")
