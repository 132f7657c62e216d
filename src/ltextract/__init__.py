"""ltextract: build ImageNet-LT from the ILSVRC2012 tars, reading only what it needs."""
__version__ = "0.1.0"
