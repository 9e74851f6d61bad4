"""Dataset converters: ISIC 2018 Task 1, Kvasir-SEG and BUSI -> nnU-Net raw datasets (installed as
``nnunet_se.conversion``)."""
