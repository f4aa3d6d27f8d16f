"""Converters from the official checkpoints of the papers (``zoo convert``, docs/converting.md).

The core owns the safe reading (:mod:`.reader`), the bookkeeping (:mod:`.keymap`), the conversion
run (:mod:`.run`) and the download of official files (:mod:`.official`); each method plugin
registers its layout as a :class:`~.base.Converter` (component kind ``converter``).
"""
from .base import Converter, OfficialCheckpoint
from .keymap import ConversionReport, KeyMap
from .reader import SAFE_GLOBALS, read_checkpoint
from .run import REPORT, convert_checkpoint, get_converter

__all__ = [
    "REPORT", "SAFE_GLOBALS", "ConversionReport", "Converter", "KeyMap", "OfficialCheckpoint", "convert_checkpoint",
    "get_converter", "read_checkpoint",
]
