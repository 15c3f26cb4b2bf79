#!/usr/bin/env python3
"""Make detectron2 importable in the running Python, without touching one that is already there.

detectron2 is not published on PyPI. Where ``import detectron2`` already works (the usual case on a
GPU cluster, where users build it from source against their CUDA), this script does nothing. Otherwise it
takes the pure-Python code of detectron2 0.7 from the ``sal-detectron2`` wheel on PyPI (built for
Python 3.10), leaves its compiled ``_C`` extension out (detectron2 falls back to PyTorch/torchvision ops
where ``_C`` is missing; only rotated boxes, deformable convolution and the fast COCO evaluator need it,
and vis_core uses none of them), unpacks it into this interpreter's site-packages and installs
detectron2's runtime dependencies with pip.

Usage: ``python tools/install_detectron2.py [--force]``
"""

import argparse
import subprocess
import sys
import sysconfig
import tempfile
import zipfile
from pathlib import Path

WHEEL_SPEC = "sal-detectron2==0.7.2"
# detectron2 0.7's runtime requirements (from the wheel's METADATA), plus fvcore/iopath which its code imports.
RUNTIME_DEPS = [
    "Pillow>=7.1",
    "matplotlib",
    "pycocotools>=2.0.2",
    "termcolor>=1.1",
    "yacs>=0.1.8",
    "tabulate",
    "cloudpickle",
    "tqdm>4.29.0",
    "tensorboard",
    "numpy<2",
    "omegaconf>=2.1,<2.4",
    "hydra-core>=1.1",
    "packaging",
    "black",
    "fvcore>=0.1.5",
    "iopath>=0.1.9",
]


def detectron2_version():
    """Return the version of an importable detectron2, or None (checked in a fresh interpreter)."""
    probe = subprocess.run(
        [sys.executable, "-c", "import detectron2; print(detectron2.__version__)"],
        capture_output=True,
        text=True,
    )
    return probe.stdout.strip() if probe.returncode == 0 else None


def pip(*args):
    subprocess.run([sys.executable, "-m", "pip", *args], check=True)


def install_from_wheel():
    site = Path(sysconfig.get_paths()["purelib"])
    with tempfile.TemporaryDirectory() as tmp:
        pip(
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--python-version",
            "3.10",
            "--dest",
            tmp,
            WHEEL_SPEC,
        )
        wheels = list(Path(tmp).glob("*.whl"))
        if len(wheels) != 1:
            sys.exit(
                f"install_detectron2: expected one wheel in {tmp} after downloading "
                f"{WHEEL_SPEC}, found {[w.name for w in wheels]}"
            )
        with zipfile.ZipFile(wheels[0]) as wheel:
            members = [
                m
                for m in wheel.namelist()
                if not (m.startswith("detectron2/_C") and m.endswith(".so"))
            ]
            wheel.extractall(site, members=members)
    print(f"install_detectron2: unpacked {WHEEL_SPEC} (pure Python, without _C) into {site}")
    pip("install", *RUNTIME_DEPS)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--force",
        action="store_true",
        help="install the pure-Python detectron2 even if one is importable",
    )
    args = parser.parse_args()
    version = detectron2_version()
    if version is not None and not args.force:
        print(f"install_detectron2: detectron2 {version} is already importable; left as it is")
        return
    install_from_wheel()
    version = detectron2_version()
    if version is None:
        sys.exit(
            "install_detectron2: detectron2 still does not import after installation; "
            f"run `{sys.executable} -c 'import detectron2'` to see why"
        )
    print(f"install_detectron2: detectron2 {version} ready")


if __name__ == "__main__":
    main()
