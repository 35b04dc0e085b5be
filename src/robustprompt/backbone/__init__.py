"""The frozen CLIP backbone with per-layer prompt edits, and how to load one."""

from .clip import BackboneIdentity, PromptableCLIP
from .edits import LayerEdit, TowerEdits, TowerOutput
from .loading import DEFAULT_MODEL, list_models, load_backbone, project_models

__all__ = ["BackboneIdentity", "PromptableCLIP", "LayerEdit", "TowerEdits", "TowerOutput", "DEFAULT_MODEL",
           "list_models", "load_backbone", "project_models"]
