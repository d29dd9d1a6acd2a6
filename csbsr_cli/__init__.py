"""csbsr: crack segmentation on blind super-resolved drone imagery (CSBSR, Kondo & Ukita, IEEE TIM 2024)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("csbsr")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"
