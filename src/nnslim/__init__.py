"""nnslim: make CNN video coding tools small and fast, measured on real codecs."""

__version__ = "0.1.0"
