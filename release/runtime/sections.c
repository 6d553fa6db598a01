/*
 * The reserved sections of a type-2 runtime. AppImage tools locate them by name and write into
 * them in place (update information, signature, signing key, appimagetool's MD5 digest), so they
 * must exist with these sizes and occupy real bytes in the file; `used` keeps the linker from
 * dropping them.
 *
 * .sqfs_sha256 is ours: the packager writes the sha256 of the appended squashfs into it
 * (identity.c reads it from the image run, and checks it before trusting it). Declared as it was
 * when this program read it itself, so the section keeps its place at the end of the ELF part
 * (the delta updater's block grid: tests/release/test_delta.py).
 */
#include "appimage.h"

__attribute__((section(".digest_md5"), used)) static char digest_md5[16] = {0};
__attribute__((section(".upd_info"), used)) static char update_information[1024] = {0};
__attribute__((section(".sha256_sig"), used)) static char signature[1024] = {0};
__attribute__((section(".sig_key"), used)) static char signing_key[8192] = {0};
__attribute__((section(".sqfs_sha256"), used)) volatile const unsigned char squashfs_sha256[32] = {0};
