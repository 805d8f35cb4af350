"""OpenCV, imported when first needed, with one clear line if it is missing (finishing, point suggestion, palette)."""

from __future__ import annotations


def cv2():
    """The ``cv2`` module (a requirement of the pack: opencv-python-headless)."""
    try:
        import cv2 as module
    except ImportError:  # a broken install still gets one clear line
        raise ImportError("this needs OpenCV: pip install opencv-python-headless") from None
    return module
