"""nnunet-se: channel-recalibration (squeeze-and-excitation) modules for nnU-Net v2.

Subpackages: ``nnunet_se.modules`` (recalibration modules and their registry),
``nnunet_se.conversion`` (dataset converters), ``nnunet_se.trainers`` (nnUNetTrainer
subclasses), ``nnunet_se.analysis`` (excitation study, figures, tables).
"""

__version__ = "0.1.0"
