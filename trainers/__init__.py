"""nnUNetTrainer subclasses with recalibration modules (installed as ``nnunet_se.trainers``)."""
