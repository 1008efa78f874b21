"""Models: a registry of architectures, safe checkpoint loading, and the [0, 1]-pixel wrapper.

Pure PyTorch, so the CLI, the workers and tests load models the same way.
"""

from robustness.models.formats import FORMATS
from robustness.models.loading import file_sha256, load_model
from robustness.models.metadata import ModelMetadata, Preprocessing
from robustness.models.registry import ARCHITECTURES, build_model, default_input_shape
from robustness.models.state_dicts import save_state_dict
from robustness.models.wrapper import Classifier

__all__ = ["ARCHITECTURES", "FORMATS", "Classifier", "ModelMetadata", "Preprocessing",
           "build_model", "default_input_shape", "file_sha256", "load_model", "save_state_dict"]
