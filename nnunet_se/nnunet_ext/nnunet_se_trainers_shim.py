"""The only module in the ``nnUNet_extTrainer`` folder: re-exports the installed plugin trainers.

nnU-Net imports this file as a top-level module and drops it afterwards; the classes keep
``__module__ == "nnunet_se.trainers..."`` so they stay importable and picklable.
"""

from nnunet_se.trainers import *  # noqa: F403
