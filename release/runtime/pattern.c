/*
 * Which paths `--appimage-extract PATTERN` extracts, with type2-runtime's semantics: fnmatch with
 * FNM_FILE_NAME (a wildcard never matches '/') and FNM_LEADING_DIR (a pattern that matches a
 * directory also selects everything below it), so `--appimage-extract usr/share` yields the
 * whole subtree, while a wildcard stays within one path component.
 */
#include <fnmatch.h>
#include <stddef.h>

#include "appimage.h"

int extract_pattern_matches(const char *pattern, const char *path)
{
	return pattern == NULL || fnmatch(pattern, path, FNM_FILE_NAME | FNM_LEADING_DIR) == 0;
}
