"""Host side of the UART board top (`python -m bitlens host --port /dev/ttyUSB0 --model M --images N`).

Sends test-set images to a board programmed with build/<M>/<board>/bitstream.bit and prints the
classes. The class is argmax of the logits the streamlined graph's final Mul/Add make of the
accumulators the board returns; the board's own class byte (and LEDs) agree when its bitstream
has the rank ROM (resources.json led_class_exact). --check compares every accumulator with the reference (qonnx execution of
build/<M>/streamlined.onnx). Serial I/O uses termios directly (Linux/macOS; no pyserial needed).

Wire format (hw/rtl/board_top_ecp5.v): per image, in_beats words of in_width/8 bytes, little
endian, elements packed from the least significant bit; reply: each output element sign/zero
extended to whole bytes, little endian, then one byte = argmax of the accumulators.
"""
import json
import os
import select
import termios
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from model import paths

REPO = Path(__file__).resolve().parent.parent
BUILD = REPO / "build"


class HostError(RuntimeError):
    pass


# ----------------------------------------------------------------------------- wire format
def encode_image(img: np.ndarray, manifest: dict) -> bytes:
    """One image (any shape, NHWC order, integer elements) as the bytes of its input words."""
    eb, epb, beats, width = (int(manifest[k]) for k in ("in_elem_bits", "in_elems_per_beat", "in_beats",
                                                        "in_width"))
    flat = np.asarray(img).reshape(-1).astype(np.int64)
    if flat.size != epb * beats:
        raise HostError(f"image has {flat.size} elements, the accelerator takes {beats} x {epb}")
    if flat.min() < 0 or flat.max() >= (1 << eb):
        raise HostError(f"image values outside 0..{(1 << eb) - 1}")
    if eb == 8 and width == 8 * epb:
        return flat.astype(np.uint8).tobytes()
    out = bytearray()
    for b in range(beats):
        word = 0
        for k, v in enumerate(flat[b * epb:(b + 1) * epb]):
            word |= int(v) << (k * eb)
        out += word.to_bytes(width // 8, "little")
    return bytes(out)


def response_length(manifest: dict) -> int:
    return int(manifest["out_beats"]) * int(manifest["out_elems_per_beat"]) * \
        ((int(manifest["out_elem_bits"]) + 7) // 8) + 1


def decode_response(buf: bytes, manifest: dict):
    """-> (accumulators int64 array, the board's argmax byte)."""
    n = int(manifest["out_beats"]) * int(manifest["out_elems_per_beat"])
    eby = (int(manifest["out_elem_bits"]) + 7) // 8
    if len(buf) != n * eby + 1:
        raise HostError(f"reply of {len(buf)} bytes, expected {n * eby + 1}")
    accs = np.array([int.from_bytes(buf[k * eby:(k + 1) * eby], "little", signed=bool(manifest["out_signed"]))
                     for k in range(n)], np.int64)
    return accs, buf[-1]


# ----------------------------------------------------------------------------- serial port
class Serial:
    """8N1 raw serial port at a given baud, via termios."""

    def __init__(self, port: str, baud: int):
        speed = getattr(termios, f"B{baud}", None)
        if speed is None:
            raise HostError(f"baud {baud} is not a standard termios rate on this system")
        try:
            self.fd = os.open(port, os.O_RDWR | os.O_NOCTTY)
        except OSError as e:
            raise HostError(f"cannot open {port}: {e.strerror} (is the board plugged in?)") from None
        try:
            iflag, oflag, cflag, lflag, _, _, cc = termios.tcgetattr(self.fd)
            cc[termios.VMIN], cc[termios.VTIME] = 0, 0
            termios.tcsetattr(self.fd, termios.TCSANOW,
                              [0, 0, termios.CS8 | termios.CREAD | termios.CLOCAL, 0, speed, speed, cc])
            termios.tcflush(self.fd, termios.TCIOFLUSH)
        except termios.error as e:
            os.close(self.fd)
            raise HostError(f"{port} is not a serial port ({e})") from None

    def write(self, data: bytes):
        view = memoryview(data)
        while view:
            n = os.write(self.fd, view)
            view = view[n:]

    def read(self, n: int, timeout: float) -> bytes:
        buf = bytearray()
        end = time.monotonic() + timeout
        while len(buf) < n:
            left = end - time.monotonic()
            if left <= 0 or not select.select([self.fd], [], [], left)[0]:
                break
            buf += os.read(self.fd, n - len(buf))
        return bytes(buf)

    def drain_input(self):
        termios.tcflush(self.fd, termios.TCIFLUSH)

    def close(self):
        os.close(self.fd)


def classify(ser, images, manifest, baud, affine=None, progress=None):
    """Send each image, read its reply; -> (accumulators (N, classes), board bytes (N,))."""
    # bytes per image at 10 bits per byte, and slack for USB latency
    timeout = 0.5 + 20.0 * (len(encode_image(images[0], manifest)) + response_length(manifest)) / baud
    time.sleep(0.05)       # longer than the board's idle reset: a half-sent old image is dropped
    ser.drain_input()
    accs, board_cls = [], []
    for i, img in enumerate(images):
        ser.write(encode_image(img, manifest))
        buf = ser.read(response_length(manifest), timeout)
        if len(buf) < response_length(manifest):
            raise HostError(f"image {i}: board answered {len(buf)} of {response_length(manifest)} bytes "
                            f"within {timeout:.1f} s (wrong bitstream or baud?)")
        a, c = decode_response(buf, manifest)
        accs.append(a)
        board_cls.append(c)
        if progress:
            progress(i, a, c)
    return np.stack(accs), np.array(board_cls)


# ----------------------------------------------------------------------------- model side
def output_affine(streamlined: Path):
    """Per-class (scale, bias) the streamlined graph applies to acc_out (identity if absent)."""
    g = onnx.load(str(streamlined)).graph
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    scale, bias, tensor = 1.0, 0.0, "acc_out"
    for node in g.node:
        if tensor not in node.input or node.op_type not in ("Mul", "Add"):
            continue
        c = next((inits[x] for x in node.input if x in inits), None)
        if c is None:
            break
        c = np.asarray(c, np.float64).reshape(-1)
        if node.op_type == "Mul":
            scale, bias = scale * c, bias * c
        else:
            bias = bias + c
        tensor = node.output[0]
    return scale, bias


def reference_accs(streamlined: Path, images):
    # deferred: qonnx's import is slow and only --check needs it
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    m = ModelWrapper(str(streamlined))
    name = m.graph.input[0].name
    return np.stack([execute_onnx(m, {name: img[None].astype(np.float32)}, return_full_exec_context=True)
                     ["acc_out"].reshape(-1) for img in images]).astype(np.int64)


def load_built(model: str, board: str, build=BUILD):
    """(resources.json, manifest.json, streamlined graph path) of a built model; one line when missing."""
    d = paths.board_dir(model, board, build)
    files = {"resources": d / "resources.json", "manifest": d / "hw" / "rtl" / "manifest.json",
             "streamlined": paths.streamlined(model, 0, build)}
    for k, p in files.items():
        if not p.exists():
            hint = "make export" if k == "streamlined" else "make bitstream"
            raise HostError(f"{p} missing: run `{hint} MODEL={model}`")
    return (json.loads(files["resources"].read_text()), json.loads(files["manifest"].read_text()),
            files["streamlined"])
