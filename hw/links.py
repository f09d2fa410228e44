"""The stream links between layers: width converters where beat sizes differ, and the depth of
the FIFO in front of each layer."""
import math

from hw.layers import MVAU, SWG, Graph

LINK_FIFO_DEPTH = 2


def link_fifo_depth(layer, ii=None):
    """Depth of the FIFO in front of a layer. An MVAU that reuses its input over NF > 1 folds takes
    a whole vector (SF beats) in its first fold; a FIFO holding that vector lets a slower producer
    keep filling it during the other folds, so the layer reaches II = SF*NF instead of waiting on
    every element of the first fold. A bl_pad (padded SWG) takes no input while it emits a run of
    border beats, the longest at an image boundary (right border, bottom and top rows, left
    border); a producer running at the design's II (`ii` cycles per image) keeps producing
    meanwhile, and a FIFO holding those beats keeps it from stalling."""
    if isinstance(layer, MVAU) and layer.mh // layer.pe > 1:
        sf = layer.mw // layer.simd
        return max(LINK_FIFO_DEPTH, 1 << (sf - 1).bit_length())
    if isinstance(layer, SWG) and layer.padded and ii:
        need = pad_burst_beats(layer, ii) + 1
        return max(LINK_FIFO_DEPTH, 1 << (need - 1).bit_length())
    return LINK_FIFO_DEPTH


def pad_burst_beats(layer, ii):
    """Input beats a producer delivering one image per `ii` cycles sends while bl_pad emits its
    longest border run."""
    t, lf, b, r = layer.pad
    cf = layer.c // layer.simd
    burst = ((t + b) * layer.wp + lf + r) * cf
    beats = layer.ifm * layer.w * cf
    return -(-burst * beats // ii)


def _links(graph: Graph):
    """Stream links (bits, producer elems, consumer elems) from input to output, for DWCs/FIFOs."""
    links = []
    prev_elems, prev_bits = None, graph.in_bits
    for l in graph.layers:
        if prev_elems is not None:
            links.append((prev_bits, prev_elems, l.in_elems))
        prev_elems, prev_bits = l.out_elems, l.out_bits
    return links


def _dwc_chain(a, b):
    """Element counts a -> ... -> b through converters where one side divides the other."""
    if a == b:
        return [a]
    if a % b == 0 or b % a == 0:
        return [a, b]
    g = math.gcd(a, b)
    return [a, g, b]
