"""What the classification steps share: a model file named by the ``model`` option.

A :class:`ModelFileStep` resolves its ``model`` option (a model file, a name in
``WS/models/`` or a shipped model's name; ``None``: the step's default) to a path, hashes it
for the run's provenance (sha256, 16 hex digits; an unreadable file is a ``ConfigError``
naming the step), and loads the model once per worker in :meth:`setup`. Subclasses name their
default model and their loader; ``kl_grade`` (radiograph ROIs) and ``mri_klg`` (whole MRI
volumes) are the two.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from kneescope.cohort.step import BaseStep
from kneescope.errors import ConfigError
from kneescope.io.digest import file_sha256


class ModelFileStep(BaseStep):
    """A step whose ``model`` option names one model file (see the module docstring).

    Subclasses set ``default_model`` (a shipped model's name), ``model_what`` (how the
    error names the expected file, e.g. ``"a KL model file"``) and implement
    :meth:`load_model`.
    """

    default_model: ClassVar[str]
    model_what: ClassVar[str] = "a model file"
    model_options: ClassVar[tuple[str, ...]] = ("model",)

    @classmethod
    def model_path_for(cls, model: object) -> Path:
        """The model file ``model`` names (``None``: :attr:`default_model`)."""
        from kneescope.models.pretrained import step_model_path

        return step_model_path(model, cls.default_model)

    @classmethod
    def file_hash(cls, path: Path) -> str:
        """sha256 (16 hex) of ``path``; ``ConfigError`` naming the step when unreadable."""
        try:
            return file_sha256(path)[:16]
        except OSError as exc:
            raise ConfigError(
                f"{cls.name}: cannot read model {path} ({exc.strerror}); give "
                f"{cls.model_what} or a shipped model's name (kneescope models list)"
            ) from None

    @classmethod
    def model_hash_for(cls, options: Mapping[str, Any]) -> str:
        """sha256 (16 hex) of the model file ``options["model"]`` names."""
        return cls.file_hash(cls.model_path_for(options.get("model")))

    def __init__(self, model: str | None = None) -> None:
        self.model_path = self.model_path_for(model)
        self._model_hash = self.file_hash(self.model_path)
        self._model: Any = None

    @property
    def model_hash(self) -> str:
        return self._model_hash

    def load_model(self, path: Path) -> Any:
        """The loaded model of ``path`` (subclasses)."""
        raise NotImplementedError

    def setup(self) -> None:
        self._model = self.load_model(self.model_path)

    def loaded_model(self) -> Any:
        """The model, loaded on first use when :meth:`setup` has not run."""
        if self._model is None:
            self.setup()
        return self._model
