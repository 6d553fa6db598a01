"""`tea self-update`: update the AppImage tea runs from, fetching only the bytes that changed.

- blockmap: the block map format a release publishes beside each AppImage (release/delta.py
  writes it with this module, so both sides read one definition);
- elf: the runtime's sections (update information, the publisher's key);
- source: where the next release is (update information → file names and locations);
- transport: HTTP Range reads (or a local release directory), split parts mapped onto;
- signature: SHA256SUMS.asc checked with the key the installed AppImage carries;
- apply: reuse, fetch, verify, replace.
"""
