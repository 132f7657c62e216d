"""The output folder's own state: the lock, folders written without following planted links,
staging, the journals of finished files, resuming, and the manifests a split ends with."""
from __future__ import annotations

STATE_DIR = ".ltextract"  # OUT/.ltextract/: the lock and one journal per split
#: ".<name>.ltx-part": a file on its way to <name>; ".<split>.ltx-part": a staged split
TMP_SUFFIX = ".ltx-part"
