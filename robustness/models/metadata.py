"""What a user declares about a model next to its checkpoint (`metadata` of ``POST /v1/models``).

Weights-only formats carry no graph, so the architecture, class count and input shape must come
from here; formats with a graph may omit them. Preprocessing is declared rather than baked into
the checkpoint so that the wrapper can apply it *inside* the model and attacks stay in [0, 1].
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from robustness.errors import ModelLoadError


class _Strict(BaseModel):
    # A misspelt key ("num_class") must fail loudly, not silently fall back to a default.
    model_config = ConfigDict(extra="forbid")


class Preprocessing(_Strict):
    """Per-channel normalization ``(x - mean) / std`` applied to inputs in [0, 1]."""

    mean: list[float] = Field(max_length=64)
    std: list[float] = Field(max_length=64)

    @field_validator("mean")
    @classmethod
    def _finite_mean(cls, v: list[float]) -> list[float]:
        if not v or not all(math.isfinite(m) for m in v):
            raise ValueError(f"preprocessing.mean must be a non-empty list of finite numbers, got {v}")
        return v

    @field_validator("std")
    @classmethod
    def _positive_std(cls, v: list[float]) -> list[float]:
        if not v or not all(math.isfinite(s) and s > 0 for s in v):
            raise ValueError(f"preprocessing.std must be a non-empty list of finite numbers > 0, "
                             f"got {v}")
        return v

    def check_channels(self, channels: int) -> None:
        """Each list must broadcast over the channels: one value, or one per channel."""
        for field in ("mean", "std"):
            n = len(getattr(self, field))
            if n not in (1, channels):
                raise ValueError(f"preprocessing.{field} has {n} values; give 1 or one per "
                                 f"channel ({channels}, from input_shape)")


class ModelMetadata(_Strict):
    name: str | None = Field(default=None, max_length=200)
    architecture: str | None = Field(default=None, max_length=200)
    num_classes: int | None = None
    input_shape: list[int] | None = Field(default=None, max_length=4)
    preprocessing: Preprocessing | None = None
    labels: list[Annotated[str, Field(max_length=200)]] | None = Field(default=None,
                                                                       max_length=100_000)
    accuracy: float | None = Field(default=None, ge=0, le=1, description="the clean "
                                   "accuracy the model is declared to reach (a model card's "
                                   "figure); the preprocessing check compares the audit's")

    @field_validator("num_classes")
    @classmethod
    def _classes(cls, v: int | None) -> int | None:
        if v is not None and v < 2:
            raise ValueError(f"num_classes must be at least 2, got {v}")
        return v

    @field_validator("input_shape")
    @classmethod
    def _shape(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and (len(v) != 3 or any(d <= 0 for d in v)):
            raise ValueError(f"input_shape must be 3 positive integers [C, H, W], got {v}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> ModelMetadata:
        if self.labels is not None and self.num_classes is not None \
                and len(self.labels) != self.num_classes:
            raise ValueError(f"labels has {len(self.labels)} entries but num_classes is "
                             f"{self.num_classes}")
        if self.preprocessing is not None and self.input_shape is not None:
            self.preprocessing.check_channels(self.input_shape[0])
        return self

    @classmethod
    def parse(cls, data: ModelMetadata | dict[str, Any] | str | bytes | None) -> ModelMetadata:
        """Validate user input into one :class:`ModelLoadError` whose message names each field."""
        if isinstance(data, cls):
            return data
        try:
            if data is None:
                return cls()
            if isinstance(data, (str, bytes)):
                return cls.model_validate_json(data)
            return cls.model_validate(data)
        except ValidationError as exc:
            # Imported here: spec.py is the one place that formats pydantic errors.
            from robustness.spec import format_validation_error
            raise ModelLoadError(f"invalid model metadata: {format_validation_error(exc)}") from None
