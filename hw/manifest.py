"""The RTL folder's manifest.json: what the simulators and board flows read about the generated
top (files, stream widths and beats, II, clock)."""
import json
from pathlib import Path

MANIFEST_KEYS = ("top", "files", "in_width", "in_elem_bits", "in_elems_per_beat", "in_beats", "out_width",
                 "out_elem_bits", "out_elems_per_beat", "out_beats", "out_signed", "analytic_ii", "clock_mhz")


class ManifestError(ValueError):
    pass


def read_manifest(rtl_dir, keys=MANIFEST_KEYS):
    """Read rtl_dir/manifest.json; `keys` are the fields the caller relies on (all by default)."""
    p = Path(rtl_dir) / "manifest.json"
    if not p.is_file():
        raise ManifestError(f"{rtl_dir}: no manifest.json (compile the graph with hw.compile first)")
    try:
        m = json.loads(p.read_text())
    except ValueError as e:
        raise ManifestError(f"{p}: not JSON ({e})") from None
    missing = [k for k in keys if k not in m]
    if missing:
        raise ManifestError(f"{p}: missing keys {', '.join(missing)}")
    for f in m["files"]:
        if not (Path(rtl_dir) / f).is_file():
            raise ManifestError(f"{p}: listed file {f} does not exist")
    return m
