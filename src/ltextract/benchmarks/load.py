"""Where each split's list comes from: a custom URL, a local folder, or the published mirrors
(through the verified-list cache); every list is parsed and checked the same way."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Mapping, Optional, Sequence

from ltextract.benchmarks import Benchmark, get
from ltextract.benchmarks.lists import (MAX_BYTES, SplitList, check_split, check_totals,
                                        list_canonical_sha256, parse)
from ltextract.errors import ListError

if TYPE_CHECKING:
    import requests


def _quiet(msg: str) -> None:
    """Default `warn`: library calls stay silent unless the caller passes a sink."""


def _read_local(path: Path) -> bytes:
    try:
        if path.stat().st_size > MAX_BYTES:  # before reading it all into memory
            raise ListError(f"{path}: {path.stat().st_size:,} bytes is too large for a list"
                            f" (limit {MAX_BYTES:,})")
        return path.read_bytes()
    except FileNotFoundError:
        raise ListError(f"{path} not found") from None
    except OSError as e:
        raise ListError(f"cannot read {path}: {e.strerror or e}") from None


def load_lists(splits: Sequence[str], *, splits_dir: Optional[Path] = None,
               split_urls: Mapping[str, str] = {},  # noqa: B006 - read only
               warn: Callable[[str], None] = _quiet,
               session: Optional[requests.Session] = None,
               benchmark: Optional[Benchmark] = None) -> dict[str, SplitList]:
    """Each split's list from the first source that applies: custom URL, `splits_dir`, published.

    A user-supplied list that is not byte-identical to the published one is still usable: it is
    recorded as custom (with one warning) so the output never claims to be ImageNet-LT proper.
    """
    bench = benchmark or get()
    specs = {s: bench.split(s) for s in [*splits, *split_urls]}  # unknown names fail here
    online = any(s in split_urls or splits_dir is None for s in splits)
    if online:  # imported only then: runs from local lists (and `verify`) never load requests (50 ms)
        from ltextract.benchmarks import fetch
    own = session is None and online
    if own:
        session = fetch.new_session()
    try:
        out = {}
        for split in splits:
            spec = specs[split]
            pin = spec.pin
            if split in split_urls:
                source = name = short = split_urls[split]
                data = fetch.fetch_url(source, session=session)
            elif splits_dir is not None:
                path = splits_dir / pin.filename
                source = name = str(path)
                short = path.name
                data = _read_local(path)
            else:
                data, source = fetch.fetch_published(spec, session=session, warn=warn)
                name = short = pin.filename
            entries, flat = parse(data, name, bench)
            check_split(spec, entries, name)
            digest = hashlib.sha256(data).hexdigest()
            variant = pin.variant(digest)
            published = digest == pin.sha256 or variant is not None
            if published:
                check_totals(pin, entries, name, bench)
            else:
                warn(f"{short} is not the published list (sha256 {digest[:12]}…);"
                     " recording it as custom")
            out[split] = SplitList(split, entries, digest, source, published,
                                   list_canonical_sha256(data, entries, digest, flat), flat,
                                   variant.name if variant else "")
        return out
    finally:
        if own and session is not None:
            session.close()
