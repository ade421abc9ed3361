"""Sliding windows: output sizes of convolutions and pooling, exactly, and the checks a
window must pass. The shape rules of :mod:`nindsl.language.layers` are built from these.

>>> conv_size(224, kernel=11, stride=4, pad=0), pool_size(54, 3, 2, 0, ceil=True)
(54, 27)
"""

from __future__ import annotations

from .ir import format_shape


def conv_size(size: int, kernel: int, stride: int, pad: int) -> int:
    """Output size of a convolution (always rounded down, as in Caffe and ONNX)."""
    return (size + 2 * pad - kernel) // stride + 1


def pool_size(size: int, kernel: int, stride: int, pad: int, ceil: bool) -> int:
    """Output size of a pooling window: floor, or Caffe's ceil rule.

    Ceil rounds up, then drops a last window that would start inside the right padding,
    as PyTorch and ONNX Runtime do. (Caffe drops it only when ``pad > 0``; the two
    differ only for a stride larger than the window, which no NiN uses.)
    """
    if not ceil:
        return conv_size(size, kernel, stride, pad)
    out = -(-(size + 2 * pad - kernel) // stride) + 1
    if (out - 1) * stride >= size + pad:
        out -= 1
    return out


class ShapeError(Exception):
    def __init__(self, message: str, help: str | None = None, code: str = "E0201"):
        super().__init__(message)
        self.message, self.help, self.code = message, help, code


def image(shape, what: str) -> tuple:
    """``shape`` if it is [N, C, H, W], else a ShapeError naming ``what`` needs one."""
    if len(shape) != 4:
        raise ShapeError(f"{what} needs a [N, C, H, W] input, got {format_shape(shape)}",
                         "convolutions and pooling come before global pooling, flatten() and dense()",
                         code="E0202")
    return shape


def window(shape, kernel: int, stride: int, pad: int, what: str, ceil: bool | None = None) -> tuple[int, int]:
    """Spatial output of a k×k window over [N, C, H, W], or a ShapeError."""
    _, _, height, width = shape
    if pad * 2 > kernel and ceil is not None:
        raise ShapeError(f"padding {pad} is more than half the {kernel}×{kernel} window",
                         f"use pad ≤ {kernel // 2}: PyTorch and ONNX Runtime refuse wider pooling padding",
                         code="E0107")
    if height + 2 * pad < kernel or width + 2 * pad < kernel:
        raise ShapeError(f"{what}'s {kernel}×{kernel} window is larger than its {height}×{width} input"
                         + (f" (padded: {height + 2 * pad}×{width + 2 * pad})" if pad else ""))
    if ceil:
        for extent in {height, width}:
            if pool_size(extent, kernel, stride, pad, True) != -(-(extent + 2 * pad - kernel) // stride) + 1:
                raise ShapeError(
                    f"with `round = ceil`, the last {kernel}×{kernel} window over {extent} would start past "
                    "the input: engines disagree on keeping it (ONNX's shape inference keeps it, "
                    "ONNX Runtime and PyTorch drop it)",
                    f"use `round = floor` (gives {conv_size(extent, kernel, stride, pad)}), a stride no larger "
                    "than the window, or less padding", code="E0107")
    size = (lambda s: pool_size(s, kernel, stride, pad, ceil)) if ceil is not None else \
        (lambda s: conv_size(s, kernel, stride, pad))
    return size(height), size(width)
