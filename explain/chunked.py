"""A model's forward split into chunks of the batch: the same outputs, computed faster.

Attribution methods and metrics hand a network thousands of images at once (captum expands the
batch by samples, steps or windows; the deletion curve by its points). A convolutional net on
this CPU costs about twice as much per image at a few thousand images a call as at ~100 (its
activations no longer stay in cache; `make bench`'s explain bench measures it), so every such
call goes through `chunked`. Each image's outputs do not depend on the other images of its batch
(eval mode), so the results are those of the whole-batch call; autograd still reaches every chunk.
"""
import torch

CHUNK = 128   # images per forward call


class Chunked:
    """Callable like `model`: splits the first dimension into pieces of at most `chunk`."""

    def __init__(self, model, chunk=None):
        self.model, self.chunk = model, chunk

    def __call__(self, x, *args):
        chunk = self.chunk or CHUNK
        if len(x) <= chunk:
            return self.model(x, *args)
        return torch.cat([self.model(c, *args) for c in x.split(chunk)])


def chunked(model, chunk=None):
    return model if isinstance(model, Chunked) else Chunked(model, chunk)
