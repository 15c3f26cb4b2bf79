"""Finding the project a config file belongs to, so that method-agnostic tools can build its model."""

import importlib.util
import os
import sys

__all__ = ["find_project_root", "load_train_net", "setup_project_cfg"]


def find_project_root(config_file):
    """The nearest folder above ``config_file`` that holds a ``train_net.py`` (``projects/<Method>``)."""
    if not os.path.isfile(config_file):
        raise FileNotFoundError(f"config file {config_file!r} does not exist")
    folder = os.path.dirname(os.path.abspath(config_file))
    while True:
        if os.path.isfile(os.path.join(folder, "train_net.py")):
            return folder
        parent = os.path.dirname(folder)
        if parent == folder:
            raise ValueError(
                f"{config_file} is not inside a project folder (one holding train_net.py, such as "
                "projects/VISOLO); pass a config file from projects/<Method>/configs/"
            )
        folder = parent


def load_train_net(config_file):
    """Import the ``train_net.py`` of the project that ``config_file`` belongs to (this registers the
    project's meta-architecture) and return the module."""
    root = find_project_root(config_file)
    name = f"_vis_project_{os.path.basename(root)}_train_net"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, os.path.join(root, "train_net.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except ModuleNotFoundError as error:
        del sys.modules[name]
        if error.name and os.path.isdir(os.path.join(root, error.name)):
            raise ModuleNotFoundError(
                f"{root}/train_net.py imports the project's package {error.name!r}, which is not "
                "installed: run `pip install -e .` (or `bash install.sh`) at the repository root, "
                "which installs every project's package",
                name=error.name,
            ) from error
        raise
    if not hasattr(module, "setup_cfg"):
        raise AttributeError(
            f"{root}/train_net.py defines no setup_cfg(config_file, opts); every project's train_net.py "
            "must, so that tools/ can build its config"
        )
    return module


def setup_project_cfg(config_file, opts=()):
    """The frozen config of ``config_file`` built with its project's ``setup_cfg`` (which registers
    its DATASETS.YTVIS_JSON sets)."""
    return load_train_net(config_file).setup_cfg(config_file, list(opts))
