"""Where each split's list comes from: a custom URL, a local folder, or the published mirrors
(through the verified-list cache); every list is parsed and checked the same way."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Mapping, Optional, Sequence

from ltextract.benchmarks import Benchmark, SplitSpec, get
from ltextract.benchmarks.lists import (MAX_BYTES, SplitList, check_split, check_totals,
                                        list_canonical_sha256, parse)
from ltextract.errors import ListError
from ltextract.files import cache_dir

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


def custom_warning(short: str, digest: str) -> str:
    return f"{short} is not the published list (sha256 {digest[:12]}…); recording it as custom"


def local_list(spec: SplitSpec, splits_dir: Optional[Path]) -> Optional[tuple[bytes, str, str]]:
    """A split's list as `load_lists` would read it, when no network is needed: from
    `splits_dir`, or the verified copy in the cache. (bytes, source as recorded, short name);
    None when it would be downloaded, or cannot be read."""
    path = splits_dir / spec.pin.filename if splits_dir is not None else \
        cache_dir() / "lists" / spec.pin.filename
    try:
        data = _read_local(path)
    except ListError:
        return None
    return data, str(path), path.name if splits_dir is not None else spec.pin.filename


def _names(names: Iterable[str]) -> str:
    """"a", "a and b", "a, b and c"."""
    *most, last = names
    return f"{', '.join(most)} and {last}" if most else last


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
        published = {}
        mirrored = [specs[s] for s in splits if s not in split_urls]
        if splits_dir is None and mirrored:  # each list tried, so a failure names every mirror
            hint = f" (offline? pass --splits-dir DIR with {_names(s.pin.filename for s in mirrored)})"
            published = fetch.each_list(mirrored, lambda spec: fetch.fetch_published(
                spec, session=session, warn=warn), hint)
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
                data, source = published[split]
                name = short = pin.filename
            entries, flat = parse(data, name, bench)
            check_split(spec, entries, name)
            digest = hashlib.sha256(data).hexdigest()
            variant = pin.variant(digest)
            published = digest == pin.sha256 or variant is not None
            if published:
                check_totals(pin, entries, name, bench)
            else:
                warn(custom_warning(short, digest))
            out[split] = SplitList(split, entries, digest, source, published,
                                   list_canonical_sha256(data, entries, digest, flat), flat,
                                   variant.name if variant else "")
        return out
    finally:
        if own and session is not None:
            session.close()
