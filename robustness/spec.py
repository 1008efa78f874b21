"""The audit spec: one pydantic model for ``POST /v1/audits`` and ``robustness audit --spec``.

Validation lives here so that every entry point rejects the same inputs with the same message
naming the field.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

DATASET_NAMES = ("mnist", "fashion_mnist", "cifar10", "cifar100", "svhn", "imagefolder",
                 "digits", "tensors")

# Split sizes of the data sets whose size is fixed, so absurd `n` is rejected before any I/O.
SPLIT_SIZES = {
    ("mnist", "train"): 60000, ("mnist", "test"): 10000,
    ("fashion_mnist", "train"): 60000, ("fashion_mnist", "test"): 10000,
    ("cifar10", "train"): 50000, ("cifar10", "test"): 10000,
    ("cifar100", "train"): 50000, ("cifar100", "test"): 10000,
    ("svhn", "train"): 73257, ("svhn", "test"): 26032,
    ("digits", "train"): 1297, ("digits", "test"): 500,  # fixed split of sklearn's 1797
}


class Strict(BaseModel):
    """Unknown keys are errors: a typo in a spec must not silently fall back to a default."""

    model_config = ConfigDict(extra="forbid")


class DatasetSpec(Strict):
    name: Literal["mnist", "fashion_mnist", "cifar10", "cifar100", "svhn", "imagefolder",
                  "digits", "tensors"]
    split: Literal["train", "test"] = "test"
    n: int | None = Field(default=None, gt=0, description="examples to take; all when absent")
    offset: int = Field(default=0, ge=0)
    seed: int | None = Field(default=None, description="sample n examples with this seed "
                             "instead of taking them in order from offset")
    path: str | None = Field(default=None, description="directory (imagefolder) or file "
                             "(tensors: .npz or .safetensors with x, y), relative to the data root")

    @model_validator(mode="after")
    def _check(self) -> DatasetSpec:
        if self.name in ("imagefolder", "tensors") and not self.path:
            raise ValueError(f"dataset.path is required for dataset '{self.name}'")
        size = SPLIT_SIZES.get((self.name, self.split))
        if size is not None:
            if self.offset >= size:
                raise ValueError(f"dataset.offset={self.offset} is beyond the {self.split} "
                                 f"split of {self.name} ({size} examples)")
            if self.n is not None and self.offset + self.n > size:
                raise ValueError(f"dataset.n={self.n} from offset {self.offset} exceeds the "
                                 f"{self.split} split of {self.name} ({size} examples)")
        return self
