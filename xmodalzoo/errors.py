"""Every exception the zoo shows to its users, in one leaf module (it imports nothing, not even torch).

:class:`UserError` marks a mistake in what the user typed or pointed at (a recipe, a name, a file):
the ``zoo`` command prints :meth:`UserError.lines` in red and exits with status 2, without a
traceback (``XMODALZOO_DEBUG=1`` shows it).  :class:`TrainingError` is a run that cannot go on
(exit status 1).  Each class also derives from the built-in exception that callers caught before it
existed (``KeyError``, ``ValueError``, ``RuntimeError``), so ``except ValueError`` keeps working.
"""
from __future__ import annotations

from typing import Iterable


class UserError(Exception):
    """Base of the errors caused by user input; the message says what is wrong and how to fix it."""

    def lines(self) -> list[str]:
        """The message as the lines the command line prints (the first after ``error:``)."""
        return str(self).splitlines() or [type(self).__name__]


class RegistryError(UserError, KeyError):
    """An unknown component kind or name, or a conflicting registration."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class PluginLoadError(UserError, RuntimeError):
    """A plugin failed to import or register (raised only in strict mode; the message ends with the traceback)."""

    def lines(self) -> list[str]:
        return [str(self).splitlines()[0], "(set XMODALZOO_DEBUG=1 for the traceback)"]


class RecipeError(UserError, ValueError):
    """A recipe (or its file, or an override) is invalid; ``messages`` holds one line per problem."""

    def __init__(self, messages: str | Iterable[str]) -> None:
        self.messages: list[str] = [messages] if isinstance(messages, str) else list(messages)
        super().__init__("\n".join(self.messages))

    def __str__(self) -> str:
        return "\n".join(self.messages)

    def lines(self) -> list[str]:
        return list(self.messages)


class ContractError(RecipeError):
    """Parts of a method that do not fit together (a head's embeddings that its similarity or loss
    cannot read, a loss that needs another similarity); one line per mismatch naming both parts."""


class DataError(UserError, RuntimeError):
    """A dataset file or setting is missing or unreadable; the message names the path and the fix."""


class ProtocolError(DataError, ValueError):
    """An evaluation protocol the split cannot serve (too few images, or unknown)."""


class ModelFolderError(UserError, ValueError):
    """A model folder (or the tokenizer saved in it) is incomplete, of an unknown format, or does not
    fit the model its config describes."""


class WeightsFileError(UserError, ValueError):
    """A weights or checkpoint file (``model.safetensors``, ``weights.safetensors``, ``train_state.pt``,
    a backbone checkpoint) is truncated, corrupt or not of its format; the message names the file."""

    def __init__(self, path: str, problem: str) -> None:
        self.path, self.problem = str(path), problem
        super().__init__(f"{path}: {problem}")


class PretrainedWeightsError(UserError, RuntimeError):
    """Initial weights a recipe asks for (``pretrained: true``) are not cached and cannot be
    downloaded; the message names the setting and the ways out."""


class CheckpointError(UserError, ValueError):
    """An official checkpoint that cannot be read safely (``torch.load(weights_only=True)``) or that
    does not fit the layout its converter maps (a key left over, a parameter left unfilled, a shape)."""


class HubError(UserError, RuntimeError):
    """A model could not be fetched: unpublished weights, not cached while offline, a repository or
    revision that does not exist, or a download that failed after huggingface_hub's retries."""


class DeviceError(UserError, RuntimeError):
    """A device was asked for that this machine does not have (e.g. ``cuda`` without CUDA)."""


class SearchIndexError(UserError, ValueError):
    """A search index folder that is missing, incomplete or of an unknown format, or a query it cannot serve."""


class ModelMismatchError(SearchIndexError):
    """A model whose config or weights differ from those a search index was built with."""


class MissingDependencyError(UserError, ImportError):
    """An optional dependency is not installed; the message says which extra to install."""


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. a non-finite loss); the message says where and what was kept."""


__all__ = [
    "CheckpointError",
    "ContractError",
    "DataError",
    "DeviceError",
    "HubError",
    "MissingDependencyError",
    "ModelFolderError",
    "ModelMismatchError",
    "PluginLoadError",
    "PretrainedWeightsError",
    "ProtocolError",
    "RecipeError",
    "RegistryError",
    "SearchIndexError",
    "TrainingError",
    "UserError",
    "WeightsFileError",
]
