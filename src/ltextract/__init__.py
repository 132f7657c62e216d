"""ltextract: build long-tailed benchmarks (ImageNet-LT first) from the image archives you
already have, reading only the bytes they need.

The Python API (`build`, `verify`, `stats`, `fetch`, `index`, `benchmarks`) lives in `ltextract.api`;
it is imported on first use, so `import ltextract` stays cheap for the command line."""
__version__ = "0.1.0"
__all__ = ["build", "verify", "stats", "fetch", "index", "benchmarks", "LtError"]


def __getattr__(name: str):
    if name in ("build", "verify", "stats", "fetch", "index", "benchmarks"):
        from ltextract import api

        return getattr(api, name)
    if name == "LtError":
        from ltextract.errors import LtError

        return LtError
    raise AttributeError(f"module 'ltextract' has no attribute {name!r}")
