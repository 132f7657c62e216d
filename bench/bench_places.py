"""The Places-LT section of `make bench`: a build from the 256x256 pair (train_256 + val_256)
against GNU tar extracting exactly the needed files, run alternately (see bench.py).

The set, made once: Places-LT-shaped lists (365 classes, train 4,980 down to 5 along the
Places-LT curve, 62,163 in all; val 20 and test 100 per class, as published) and the 256 pair
around them, every class filled to 5,000 train images as Places365-Standard's largest (1.8M
train members of ~300 B, as the full-count ImageNet set), val_256 the 36,500 test images."""
from __future__ import annotations

import time
from pathlib import Path

from ltextract.benchmarks import get
from ltextract.synth.archives import AroundSpec, places_around
from ltextract.synth.lists import ListsSpec, curve, make_lists, write_lists

ARGS = ("--benchmark", "places_lt")


def ensure_places_set(folder: Path, quick: bool) -> Path:
    """The manual dir (lists in it too), generated once; a marker records what it was made from."""
    classes, fill = (4, 40) if quick else (365, 5000)
    spec = ListsSpec(classes=classes, seed=0, val_per_class=3 if quick else 20,
                     test_per_class=5 if quick else 100, counts=tuple(curve(classes)) if not quick else None,
                     train_max=30, train_min=2)
    marker = folder / "spec.txt"
    if marker.exists() and marker.read_text() == repr((spec, fill)):
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.iterdir():
        old.unlink()
    started = time.monotonic()
    bench = get("places_lt")
    lines = make_lists(bench, spec)
    write_lists(folder, bench, lines)
    places_around(folder, lines, "256", AroundSpec(fill_to=fill))
    marker.write_text(repr((spec, fill)))
    print(f"bench: generated {folder} in {time.monotonic() - started:.1f} s", flush=True)
    return folder


def bench_places(h, manual: Path, work: Path, rounds: int, strategies: list[str]) -> str:
    """Build of Places-LT's three splits from the 256 pair (index cached, and not yet) against
    the GNU-tar floor and cat; `h` is bench.py, whose helpers this uses."""
    env = {"LTEXTRACT_CACHE_DIR": str(work / "cache-places")}
    h.run(h.ltextract("index", "--manual-dir", manual, "-q"), env)
    floor_tar = h.needed_tar(manual, work, env, *ARGS)
    out = work / "out"
    tars = [manual / "train_256_places365standard.tar", manual / "val_256.tar"]
    builds = [h.Contender(f"ltextract build ({s})",
                          lambda s=s: h.run(h.build_cmd(manual, out, *ARGS, "--strategy", s), env),
                          after=lambda: h.clear(out)) for s in strategies]
    no_index = {"LTEXTRACT_CACHE_DIR": str(work / "cache-places-none")}
    builds.append(h.Contender("ltextract build (seek, no index yet)",
                              lambda: h.run(h.build_cmd(manual, out, *ARGS, "--strategy", "seek"), no_index),
                              before=lambda: h.clear(work / "cache-places-none"), after=lambda: h.clear(out)))
    floor = h.Contender("GNU tar, exactly the needed files",
                        lambda: h.run(["tar", "-xf", str(floor_tar), *h.FLOOR_FLAGS, "-C", str(out)]),
                        before=lambda: out.mkdir(), after=lambda: h.clear(out))
    cat = h.Contender("cat of the tars", lambda: h.run(["sh", "-c", 'cat "$@" > /dev/null', "sh",
                                                        *map(str, tars)]))
    h.clear(out)
    h.alternate([*builds, floor, cat], rounds, "places", each=lambda: h.warm(*tars, floor_tar))
    rows = [[c.name, h.secs(c.median()), _ratio(c.median(), floor.median()), h.secs(c.median("cpu")),
             _ratio(c.median("cpu"), floor.median("cpu")), h.mb(c.median("max_rss"))]
            for c in (*builds, floor, cat)]
    per_round = [_ratio(b.wall, f.wall).rstrip("×") for b, f in zip(builds[0].runs, floor.runs)]
    note = (f"{h.mb(sum(t.stat().st_size for t in tars))} of tars; {h.mb(floor_tar.stat().st_size)} of"
            f" needed files (the floor's tar). {builds[0].name} ÷ floor per round: {', '.join(per_round)}.\n")
    return h.table("Places-LT from the 256 pair, index cached unless said (warm cache)",
                   ["", "wall (median)", "÷ GNU-tar floor", "CPU (median)", "÷ floor's CPU", "peak RSS"],
                   rows) + "\n" + note


def _ratio(x: float, base: float) -> str:
    """x ÷ base; "–" where the base took no measurable time (a tiny --quick set's CPU)."""
    return f"{x / base:.2f}×" if base > 0 else "–"
