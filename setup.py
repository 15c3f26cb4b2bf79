#!/usr/bin/env python
"""Installs vis_core, the shared core of the VIS project collection, and every project's package.

Each ``projects/<Method>/<package>/`` (a folder with an ``__init__.py``, e.g. ``projects/VISOLO/visolo``)
is installed as the top-level package ``<package>``, so that ``import visolo`` works from anywhere and a
new project is picked up without editing this file.

The compiled ops (``vis_core._C``, sources in ``vis_core/csrc``) are built where a CUDA toolkit is
found; set ``VIS_CORE_NO_CUDA_OPS=1`` to skip them. ``vis_core._rle`` (``vis_core/csrc/rle``: mask
areas and intersections for the evaluator, plain C++ without torch so that the evaluation command
line does not import torch) is built everywhere; set ``VIS_CORE_NO_CPU_OPS=1`` to skip it. A failed
build never fails the install: every op has a pure-Python/PyTorch twin that vis_core uses instead.
"""

import glob
import logging
import os
import re
import subprocess

from setuptools import Extension, find_packages, setup

logger = logging.getLogger("vis_core.setup")
HERE = os.path.dirname(os.path.abspath(__file__))


def _cuda_library_dirs(cuda_home):
    """Folders holding libcudart. torch looks only in CUDA_HOME/lib64, but a toolkit reached through
    an nvcc wrapper script (CUDA_HOME=/usr/local) keeps it elsewhere: ask nvcc where it links from.
    """
    dirs = [
        d
        for d in (os.path.join(cuda_home, "lib64"), os.path.join(cuda_home, "lib"))
        if os.path.isdir(d)
    ]
    if any(glob.glob(os.path.join(d, "libcudart.so*")) for d in dirs):
        return []  # torch's own flags already find it
    nvcc = os.path.join(cuda_home, "bin", "nvcc")
    try:
        dryrun = subprocess.run(
            [nvcc, "--dryrun", "-c", "vis_core_probe.cu", "-o", os.devnull],
            capture_output=True,
            text=True,
            timeout=60,
        ).stderr
    except (OSError, subprocess.SubprocessError):
        return []
    found = []
    for line in dryrun.splitlines():
        if "LIBRARIES=" in line:
            found += [d for d in re.findall(r'-L"?([^" ]+)"?', line) if not d.endswith("stubs")]
    return [os.path.normpath(d) for d in found if glob.glob(os.path.join(d, "libcudart.so*"))]


RLE_CSRC = os.path.join("vis_core", "csrc", "rle")


def project_packages(root=HERE):
    """(packages, package_dir) of every project's package: ``projects/<Method>/<package>/__init__.py``
    becomes the importable package ``<package>`` (with its sub-packages). Two projects shipping a
    package of the same name would shadow each other, so that stops the install."""
    packages, package_dir = [], {}
    for init in sorted(glob.glob(os.path.join(root, "projects", "*", "*", "__init__.py"))):
        folder = os.path.dirname(init)
        name = os.path.basename(folder)
        rel = os.path.relpath(folder, root)
        if name in package_dir:
            raise RuntimeError(
                f"projects {package_dir[name]!r} and {rel!r} both ship a package named {name!r}; "
                "rename one of them"
            )
        package_dir[name] = rel
        packages += [name] + [f"{name}.{sub}" for sub in find_packages(where=folder)]
    return packages, package_dir


def get_cpu_extensions():
    """vis_core._rle (no torch, no CUDA), or [] with VIS_CORE_NO_CPU_OPS=1."""
    if os.environ.get("VIS_CORE_NO_CPU_OPS", "0") == "1":
        return []
    return [
        Extension(
            "vis_core._rle",
            sorted(glob.glob(os.path.join(RLE_CSRC, "*.cpp"))),
            extra_compile_args=["-O3"],
            language="c++",
        )
    ]


def get_extensions():
    """The CUDA extension vis_core._C, or [] where it cannot or should not be built."""
    if os.environ.get("VIS_CORE_NO_CUDA_OPS", "0") == "1":
        return []
    try:
        from torch.utils.cpp_extension import CUDA_HOME, CUDAExtension
    except ImportError:  # torch is not installed yet (e.g. build isolation): skip the ops
        return []
    csrc = os.path.join("vis_core", "csrc")
    sources = sorted(
        glob.glob(os.path.join(csrc, "*.cpp")) + glob.glob(os.path.join(csrc, "*", "*.cpp"))
    )
    sources = [s for s in sources if not s.startswith(RLE_CSRC)]  # vis_core._rle's
    cuda_sources = sorted(glob.glob(os.path.join(csrc, "**", "*.cu"), recursive=True))
    if CUDA_HOME is None or not cuda_sources:
        return []
    # Build for Ampere and Hopper when no GPU is visible to pick the architecture from.
    os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "8.0;9.0")
    return [
        CUDAExtension(
            "vis_core._C",
            sources + cuda_sources,
            include_dirs=[os.path.join(HERE, csrc)],
            library_dirs=_cuda_library_dirs(CUDA_HOME),
            define_macros=[("WITH_CUDA", None)],
            # nvcc compiles the architectures in parallel (one thread per core).
            extra_compile_args={
                "cxx": ["-O3"],
                "nvcc": ["-O3", f"--threads={os.cpu_count() or 1}"],
            },
        )
    ]


def get_cmdclass():
    try:
        from torch.utils.cpp_extension import BuildExtension

        base = BuildExtension.with_options(use_ninja=False)
    except ImportError:  # only vis_core._rle is built
        from setuptools.command.build_ext import build_ext as base

    class TolerantBuildExtension(base):
        """Builds the extensions, but lets the install go on without one whose compilation fails."""

        failed = ()

        def build_extensions(self):
            super().build_extensions()
            # Drop what failed so that the in-place copy and the output lists do not look for it.
            self.extensions = [ext for ext in self.extensions if ext.name not in self.failed]

        def build_extension(self, ext):
            try:
                super().build_extension(ext)
            except Exception as error:  # noqa: BLE001 - any compiler failure; the twin takes over
                self.failed = (*self.failed, ext.name)
                logger.warning(
                    "vis_core: building %s failed (%s); vis_core will use the pure-Python/PyTorch "
                    "ops. Set VIS_CORE_NO_CUDA_OPS=1 (vis_core._C) or VIS_CORE_NO_CPU_OPS=1 "
                    "(vis_core._rle) to skip the build.",
                    ext.name,
                    error,
                )

    return {"build_ext": TolerantBuildExtension}


if __name__ == "__main__":  # pip and setuptools run this file as __main__; tests import it
    PROJECT_PACKAGES, PROJECT_PACKAGE_DIR = project_packages()

    setup(
        name="vis_core",
        version="0.1.0",
        description="Shared core of a detectron2 project collection for video instance segmentation",
        packages=find_packages(include=["vis_core", "vis_core.*"]) + PROJECT_PACKAGES,
        package_dir=PROJECT_PACKAGE_DIR,
        python_requires=">=3.10",
        install_requires=[
            "torch>=2.0",
            "torchvision",
            "numpy<2",
            "fvcore>=0.1.5",
            "pycocotools>=2.0.2",
            "orjson",  # fast JSON parsing of results.json in vis_core.evaluation (optional at run time)
            "msgspec>=0.18",  # typed, validating parse of results.json (optional at run time)
            "opencv-python-headless<4.12",
            "scipy>=1.7",
            "tqdm",
            "matplotlib",
            "tabulate",
        ],
        extras_require={"dev": ["pytest>=7", "black>=23", "ruff>=0.4"]},
        ext_modules=get_cpu_extensions() + get_extensions(),
        cmdclass=get_cmdclass(),
    )
