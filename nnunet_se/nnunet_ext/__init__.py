"""Folder for ``nnUNet_extTrainer``: holds only the shim module that re-exports the trainers."""
