"""Augmentation registrations (implementations beside this file; nothing heavy imported here).

Batch augmentations are ``fn(x, generator) -> x'`` on normalised (N, C, H, W) tensors, drawn
from the caller's generator on the device.  ``zca`` is a data-set-level transform (fitted once on
the training set, cached as an artifact).  Data sets declare what an augmentation must know of
them as ``traits`` (``no_flip``: mirroring changes the class, as for digits).
"""
from kddbench import AugmentationSpec, hookimpl
from kddbench.options import Bool, Float, Int, Str

_P_FLIP = Float(0.5, min=0, max=1, doc="probability of a horizontal flip")

_A = "kddbench_plugins.augmentations."


@hookimpl
def kddbench_augmentations():
    yield AugmentationSpec("none", _A + "identity:none", "no augmentation")
    yield AugmentationSpec(
        "dsa", _A + "dsa:dsa",
        "Differentiable Siamese Augmentation (Zhao & Bilen 2021): one of color, crop, cutout, "
        "flip, scale, rotate per call, values per image; flip dropped for no_flip data sets",
        options={"strategy": Str("color_crop_cutout_flip_scale_rotate",
                                     doc="transforms joined by _"),
                 "single": Bool(True, doc="one transform per call (else all in turn)")})
    yield AugmentationSpec(
        "flip_rotate", _A + "flip_rotate:flip_rotate",
        "per image: rotation in [-15, 15] degrees, horizontal and vertical flips (p 0.5 each)",
        options={"max_degrees": Float(15.0, min=0, max=180), "p_flip": _P_FLIP})
    yield AugmentationSpec(
        "crop_flip", _A + "crop_flip:crop_flip",
        "CIFAR KD recipe: random crop of the image padded by 4 px, horizontal flip (p 0.5)",
        options={"padding": Int(4, min=0), "p_flip": _P_FLIP})
    yield AugmentationSpec(
        "zca", _A + "zca:zca",
        "ZCA whitening fitted on the training set (data-set-level transform, cached)",
        options={"eps": Float(0.1, above=0)}, level="dataset")
