"""Mutants of the safety checks, and the tests that must kill them.

Each mutant is a one-line change to a check that protects users (a deleted verify, a flipped
comparison, a dropped flag). `python tests/mutants.py` applies each one in turn to this checkout,
runs the tests named for it, expects them to FAIL, and puts the file back; it first runs the same
tests on the unchanged code, which must pass. A mutant whose tests pass is a missing test.

    python tests/mutants.py               # all of them
    python tests/mutants.py keyring-      # those whose name starts with keyring-
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
APP = "python/src/the_edge_agent"


@dataclass(frozen=True)
class Mutant:
    name: str
    path: str
    old: str  # must occur exactly once in path
    new: str
    tests: tuple[str, ...]  # pytest node ids (files or file::test) that must fail with the mutant


MUTANTS = (
    # --- issue 30: test-appimage --keyring, names in SHA256SUMS ---
    Mutant("keyring-no-authentication", "release/artifact_source.py",
           "        authenticate_sums(sums_path, origin, source.workdir, keyring)\n", "        pass\n",
           ("tests/release/test_artifact_keyring.py::test_sums_changed_after_signing_are_refused_before_the_file_is_used",)),
    Mutant("keyring-lone-file-unverified", "release/artifact_source.py",
           "if sums_path is None and keyring is None:", "if sums_path is None:",
           ("tests/release/test_artifact_keyring.py::test_a_keyring_without_any_sha256sums_refuses_the_file",)),
    Mutant("sums-name-keeps-its-directory", "release/checksums.py",
           "_add(sums, Path(match.group(2)).name,", "_add(sums, match.group(2),",
           ("tests/release/test_artifact_keyring.py::test_a_sums_name_with_a_directory_never_writes_outside_the_work_folder",
            "tests/release/test_artifact_keyring.py::test_a_sums_name_with_a_directory_never_picks_a_local_file_outside_the_release")),
    Mutant("keyring-embedded-signature-unchecked", "release/commands.py",
           'log.info(f"{path.name}: embedded signature by {signing.verify_appimage(path, keyring)}")', "pass",
           ("tests/release/test_artifact_keyring.py::test_with_a_keyring_an_appimage_without_its_embedded_signature_is_refused",)),
    # --- issue 30: downloads ---
    Mutant("resume-any-offset", "release/download.py",
           "if response.status_code == 206 and match and int(match.group(1)) == part.size:",
           "if response.status_code == 206 and match:",
           ("tests/release/test_download.py::test_a_206_for_another_offset_is_never_spliced_onto_the_part",)),
    Mutant("announced-cap-inclusive", "release/download.py",
           "if remote.cap and length > remote.cap - start:", "if remote.cap and length >= remote.cap - start:",
           ("tests/release/test_download.py::test_a_body_of_exactly_the_limit_is_accepted_announced_or_not",)),
    Mutant("announced-cap-one-over", "release/download.py",
           "if remote.cap and length > remote.cap - start:", "if remote.cap and length > remote.cap - start + 1:",
           ("tests/release/test_download.py::test_announced_length_beyond_the_pin_is_refused_before_the_body",)),
    Mutant("streamed-cap-inclusive", "release/download.py",
           "if remote.cap and part.size + len(chunk) > remote.cap:",
           "if remote.cap and part.size + len(chunk) >= remote.cap:",
           ("tests/release/test_download.py::test_a_body_of_exactly_the_limit_is_accepted_announced_or_not",)),
    Mutant("streamed-cap-one-over", "release/download.py",
           "if remote.cap and part.size + len(chunk) > remote.cap:",
           "if remote.cap and part.size + len(chunk) > remote.cap + 1:",
           ("tests/release/test_download.py::test_one_byte_past_the_limit_is_refused_without_a_length",)),
    # --- issue 30: the variant proof's emulation checks (a recorded tea, fast) ---
    Mutant("emulation-effect-unchecked", "release/variant_proof.py",
           "if native and not emulation_took_effect(host_identity, host_scores, identity, scores):", "if False:",
           ("tests/release/test_variant_proof.py::test_an_emulation_that_did_not_take_effect_fails_the_proof_fast",)),
    Mutant("emulation-effect-by-scores-only", "release/variant_proof.py",
           "    if host_identity and identity:\n", "    if False:\n",
           ("tests/release/test_variant_proof.py::test_an_emulated_cpu_that_scores_like_this_host_is_no_failure",)),
    Mutant("emulated-held-to-rounding-only", "release/variant_proof.py",
           "prover.prove_emulated(emulated_tea, machine, name, host_scores.get(name, 0) > 0)",
           "prover.prove_emulated(emulated_tea, machine, name, False)",
           ("tests/release/test_variant_proof.py::test_an_emulated_variant_within_rounding_but_not_equal_to_its_native_run_fails",)),
    Mutant("emulated-always-against-native", "release/variant_proof.py",
           "prover.prove_emulated(emulated_tea, machine, name, host_scores.get(name, 0) > 0)",
           "prover.prove_emulated(emulated_tea, machine, name, True)",
           ("tests/release/test_variant_proof.py::test_a_variant_this_host_cannot_run_is_held_to_the_reference_on_its_emulated_cpu",)),
    Mutant("emulated-native-compare-rounded", "release/variant_proof.py",
           "if emulated != self.probe(tea, Machine(), variant):",
           "if mean_drift(emulated, self.probe(tea, Machine(), variant)) > DRIFT_TOLERANCE:",
           ("tests/release/test_variant_proof.py::test_an_emulated_variant_within_rounding_but_not_equal_to_its_native_run_fails",)),
    Mutant("emulated-picks-every-variant", "release/variant_proof.py",
           "picked = runnable_by_score(variants, scores)[:1]", "picked = runnable_by_score(variants, scores)",
           ("tests/release/test_variant_proof.py::test_prove_runs_every_runnable_variant_natively_and_the_picked_one_per_emulated_cpu",)),
    # --- issue 30: publish and merge ---
    Mutant("dir-publish-size-only", "release/publish.py",
           "same = dest.stat().st_size == item.size and sha256_file(dest) == item.sha256",
           "same = dest.stat().st_size == item.size",
           ("tests/release/test_publish.py::test_dir_publish_repairs_a_same_size_corruption",)),
    Mutant("github-starter-asset-trusted", "release/github.py",
           'return (self.state == "uploaded" and self.size == size', "return (self.size == size",
           ("tests/release/test_publish.py::test_github_unfinished_upload_of_full_size_and_right_label_is_replaced",)),
    Mutant("merge-manifests-any-commit", "release/checksums.py",
           'for key in ("version", "commit"):', 'for key in ("version",):',
           ("tests/release/test_checksums.py::test_merge_manifests_refuses_builds_of_another_commit",)),
    # --- issue 24 N14: hostile manifests, ELF headers and SHA256SUMS give one line ---
    Mutant("exec-format-error-traceback", "release/proc.py",
           "    except OSError as exc:  # not a program", "    except ImportError as exc:  # not a program",
           ("tests/release/test_hostile_input.py::test_test_appimage_refuses_a_hostile_elf_in_one_line",)),
    Mutant("truncated-elf-traceback", "release/audit.py",
           "        except ELFError as exc:  # a damaged", "        except ImportError as exc:  # a damaged",
           ("tests/release/test_hostile_input.py::test_test_appimage_refuses_a_hostile_elf_in_one_line",)),
    Mutant("unknown-machine-keyerror", "release/arch.py",
           "    if arch not in QEMU_BINFMT:\n        return False\n", "",
           ("tests/release/test_hostile_input.py::test_test_appimage_refuses_a_hostile_elf_in_one_line",)),
    Mutant("manifest-records-unchecked", "release/checksums.py",
           "problem = next(filter(None, map(artifact_problem, manifest[\"artifacts\"])), None)", "problem = None",
           ("tests/release/test_hostile_input.py::test_test_appimage_refuses_a_hostile_manifest_in_one_line",
            "tests/release/test_hostile_input.py::test_manifest_merge_refuses_a_hostile_manifest_in_one_line")),
    Mutant("manifest-nesting-traceback", "release/checksums.py",
           "except (OSError, ValueError, RecursionError) as exc:", "except (OSError, ValueError) as exc:",
           ("tests/release/test_hostile_input.py::test_manifest_merge_refuses_a_hostile_manifest_in_one_line",)),
    Mutant("unwritable-output-traceback", "release/checksums.py",
           "    except OSError as exc:  # a directory at path", "    except ImportError as exc:  # a directory at path",
           ("tests/release/test_hostile_input.py::test_checksums_merge_to_a_directory_is_one_line",)),
    # --- issue 24 N13: the partial file, never through a symlink, in a private directory ---
    Mutant("partial-follows-symlinks", f"{APP}/update/apply.py",
           "flags = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC", "flags = os.O_RDWR | os.O_CLOEXEC",
           ("tests/app/test_self_update.py::test_a_symlink_inside_the_work_directory_is_never_followed",)),
    Mutant("work-dir-follows-symlink", f"{APP}/update/apply.py",
           "os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC", "os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC",
           ("tests/app/test_self_update.py::test_a_symlink_planted_as_the_work_directory_is_refused",)),
    Mutant("work-dir-owner-unchecked", f"{APP}/update/apply.py",
           "if info.st_uid != os.geteuid() or info.st_mode & 0o077:", "if info.st_mode & 0o077:",
           ("tests/app/test_self_update.py::test_a_work_directory_that_is_not_private_is_refused",)),
    Mutant("work-dir-mode-unchecked", f"{APP}/update/apply.py",
           "if info.st_uid != os.geteuid() or info.st_mode & 0o077:", "if info.st_uid != os.geteuid():",
           ("tests/app/test_self_update.py::test_a_work_directory_that_is_not_private_is_refused",)),
    Mutant("partial-beside-the-appimage", f"{APP}/update/apply.py",
           'return target.with_name(f".{target.name}.update")', 'return target.parent',
           ("tests/app/test_self_update.py::test_a_work_directory_that_is_not_private_is_refused",
            "tests/app/test_self_update.py::test_a_code_only_update_fetches_only_the_changed_blocks")),
    # --- issue 24 N7: an unsigned AppImage updates only when asked, only over HTTPS ---
    Mutant("unsigned-without-opt-in", f"{APP}/update/command.py",
           "if not key and not allow_unsigned:", "if False:",
           ("tests/app/test_self_update.py::test_an_unsigned_appimage_updates_only_when_asked",)),
    Mutant("unsigned-over-plain-http", f"{APP}/update/command.py",
           "transport = Transport(https_only=not key)", "transport = Transport()",
           ("tests/app/test_self_update.py::test_an_unsigned_appimage_never_updates_over_plain_http",)),
    Mutant("redirect-to-plain-http", f"{APP}/update/transport.py",
           "*([_NoPlainRedirect] if self.https_only else [])", "*[]",
           ("tests/app/test_self_update.py::test_an_unsigned_appimage_never_follows_a_redirect_to_plain_http",)),
    # --- issue 24 N5: no downgrade unless asked ---
    Mutant("downgrade-accepted", f"{APP}/update/command.py",
           'if version_key(offered) < (version_key(running) or version_key("0")):', "if False:",
           ("tests/app/test_self_update.py::test_a_release_older_than_the_running_tea_is_refused_unless_asked",)),
    Mutant("same-version-refused", f"{APP}/update/command.py",
           'if version_key(offered) < (version_key(running) or version_key("0")):',
           'if version_key(offered) <= (version_key(running) or version_key("0")):',
           ("tests/app/test_self_update.py::test_a_release_of_the_running_version_or_without_one_in_its_name",)),
    Mutant("unknown-version-accepted", f"{APP}/update/command.py",
           "if offered is None or version_key(offered) is None:", "if False:",
           ("tests/app/test_self_update.py::test_a_release_of_the_running_version_or_without_one_in_its_name",)),
    Mutant("pre-release-after-release", f"{APP}/version.py",
           "pre = (-1, 0) if match[5] and not match[4] else (3, 0)", "pre = (-1, 0)",
           ("tests/app/test_self_update.py::test_versions_compare_as_pep_440_orders_them",)),
    # --- issue 24 N8: reassemble.sh is listed in SHA256SUMS ---
    Mutant("script-not-listed", "release/checksums.py",
           "        names.append(SCRIPT_NAME)\n", "",
           ("tests/release/test_publish.py::test_reassemble_script_is_in_the_sums_and_checked_before_publishing",)),
    Mutant("merged-sums-keep-each-builds-script", "release/checksums.py",
           "            if name != SCRIPT_NAME:\n                _add(", "            if True:\n                _add(",
           ("tests/release/test_checksums.py::test_merge_sums_lists_the_releases_reassemble_script_not_each_builds",)),
    Mutant("merged-manifest-without-script", "release/commands.py",
           "    script = reassemble.write_reassemble_script(merged.parent, checksums_module.read_manifest(merged))\n",
           "    script = None\n",
           ("tests/release/test_publish.py::test_merged_manifests_come_with_one_reassemble_script_for_every_split_file",)),
    # --- issue 24 N18: the throwaway GnuPG home goes even without gpgconf ---
    Mutant("gpg-cleanup-needs-gpgconf", "release/gpg.py",
           "            if shutil.which(\"gpgconf\"):  # without it", "            if True:  # without it",
           ("tests/release/test_signing.py::test_no_gnupg_home_is_left_behind_without_gpgconf",)),
    Mutant("gpg-cleanup-as-on-main", "release/gpg.py",
           "        try:\n            if shutil.which(\"gpgconf\"):  # without it the agent leaves by itself once its home "
           "is gone\n                proc.run([\"gpgconf\", \"--homedir\", home, \"--kill\", \"all\"], check=False)\n"
           "        finally:  # the home may hold the secret key: it goes whatever happened above\n"
           "            shutil.rmtree(home, ignore_errors=True)\n",
           "        proc.run([\"gpgconf\", \"--homedir\", home, \"--kill\", \"all\"], check=False)\n"
           "        shutil.rmtree(home, ignore_errors=True)\n",
           ("tests/release/test_signing.py::test_no_gnupg_home_is_left_behind_without_gpgconf",)),
    # --- issue 24 N9: test-appimage's downloads are capped ---
    Mutant("artifact-download-uncapped", "release/artifact_source.py",
           "sha256, limit=self.limit(name)), self.cache_dir,", "sha256), self.cache_dir,",
           ("tests/release/test_hostile_release.py::test_an_endless_artifact_stops_at_the_size_the_manifest_gives_it",)),
    Mutant("manifest-sizes-ignored", "release/artifact_source.py",
           "source = replace(source, sizes=described_sizes(manifest))", "source = replace(source, sizes={})",
           ("tests/release/test_hostile_release.py::test_an_endless_part_stops_at_the_size_the_manifest_gives_it",)),
    Mutant("sbom-capped-like-an-appimage", "release/artifact_source.py",
           "return self.sizes.get(name) or (SBOM_LIMIT if name.endswith(SBOM_SUFFIX) else self.size_cap)",
           "return self.sizes.get(name) or self.size_cap",
           ("tests/release/test_hostile_release.py::test_an_endless_sbom_stops_at_its_limit_and_is_only_noted",)),
    Mutant("default-cap-unpinned", "release/artifact_source.py",
           "size_cap or load_pins().asset_size_cap", "size_cap or 1 << 40",
           ("tests/release/test_hostile_release.py::test_the_default_cap_is_the_pinned_asset_size_cap",)),
    # --- issue 24 N14 in tea self-update: hostile block maps and GitHub answers ---
    Mutant("blockmap-nesting-traceback", f"{APP}/update/blockmap.py",
           "except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as error:",
           "except (ValueError, KeyError, TypeError, AttributeError) as error:",
           ("tests/app/test_self_update.py::test_a_hostile_block_map_is_one_line",)),
    Mutant("blockmap-zero-block-size", f"{APP}/update/blockmap.py",
           "(self.block_size > 0 and len(self.digests) != self.blocks * DIGEST_BYTES,",
           "(len(self.digests) != self.blocks * DIGEST_BYTES,",
           ("tests/app/test_self_update.py::test_a_hostile_block_map_is_one_line",)),
    Mutant("api-answer-nesting-traceback", f"{APP}/update/source.py",
           "    except (ValueError, RecursionError):\n        raise UpdateError(f\"{what} is not JSON\")",
           "    except ValueError:\n        raise UpdateError(f\"{what} is not JSON\")",
           ("tests/app/test_self_update.py::test_a_hostile_github_answer_is_one_line",)),
    Mutant("update-check-never-allows-unsigned", "release/update_check.py",
           'unsigned = [] if carries_a_key(old) else ["--allow-unsigned"]', "unsigned = []",
           ("tests/release/test_update_check.py::test_an_unsigned_old_updates_as_its_user_would_with_allow_unsigned",)),
    Mutant("update-check-always-unsigned", "release/update_check.py",
           "return section is not None and bool(signing.read_section(appimage, section).strip())", "return False",
           ("tests/release/test_update_check.py::test_a_signed_appimage_carries_a_key_and_an_unsigned_one_none",)),
    # --- issue 24: byte-reproducible releases (invoke reproduce's decisions) ---
    Mutant("reproduce-compares-nothing", "release/reproduce.py",
           "differ = sorted(name for name, sha in rebuilt.items() if sha != expected_digest(manifest, name))",
           "differ = []",
           ("tests/release/test_reproduce.py::test_a_rebuild_with_other_bytes_fails_and_is_recorded",)),
    Mutant("reproduce-compares-signed-bytes", "release/reproduce.py",
           "found[artifact[\"name\"]] = signing.appimage_digest(rebuilt)",
           "found[artifact[\"name\"]] = __import__(\"hashlib\").sha256(rebuilt.read_bytes()).hexdigest()",
           ("tests/release/test_reproduce.py::test_the_signature_sections_do_not_count",)),
    Mutant("reproduce-ignores-changes", "release/reproduce.py",
           "    if changes:\n", "    if False:\n",
           ("tests/release/test_reproduce.py::test_a_checkout_with_changes_beyond_the_commit_is_refused",)),
    Mutant("install-origin-kept", "release/freeze.py",
           "        origin.unlink()\n", "        continue\n",
           ("tests/release/test_freeze.py::test_pip_install_origins_leave_the_bundle",)),
)


def run_tests(tests: tuple[str, ...]) -> int:
    command = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-p", "no:randomly", *tests]
    return subprocess.run(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode


def apply(mutant: Mutant) -> str:
    """The file's original text; the mutant is in place when this returns."""
    path = REPO / mutant.path
    original = path.read_text()
    if original.count(mutant.old) != 1:
        raise SystemExit(f"{mutant.name}: {mutant.old!r} occurs {original.count(mutant.old)} times in {mutant.path}")
    path.write_text(original.replace(mutant.old, mutant.new))
    return original


def main(prefixes: list[str]) -> int:
    chosen = [m for m in MUTANTS if not prefixes or m.name.startswith(tuple(prefixes))]
    survived = []
    for tests in dict.fromkeys(m.tests for m in chosen):
        if run_tests(tests) != 0:
            print(f"FAIL on the unchanged code: {' '.join(tests)}")
            return 2
    for mutant in chosen:
        original = apply(mutant)
        try:
            killed = run_tests(mutant.tests) != 0
        finally:
            (REPO / mutant.path).write_text(original)
        print(f"{'killed  ' if killed else 'SURVIVED'} {mutant.name}: {mutant.path} by {' '.join(mutant.tests)}",
              flush=True)
        if not killed:
            survived.append(mutant.name)
    print(f"{len(chosen) - len(survived)} of {len(chosen)} mutants killed")
    return 1 if survived else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
