"""setup.py installs every project's package; a user's own train script needs no sys.path edits."""

import importlib.util
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO


def _setup_module():
    spec = importlib.util.spec_from_file_location("vis_core_setup", os.path.join(REPO, "setup.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # not __main__: defines the helpers, installs nothing
    return module


def test_every_project_package_is_installed():
    packages, package_dir = _setup_module().project_packages()
    assert {"visolo", "mask2former_vis"} <= set(packages)
    assert package_dir["visolo"] == os.path.join("projects", "VISOLO", "visolo")
    assert package_dir["mask2former_vis"] == os.path.join(
        "projects", "Mask2Former_VIS", "mask2former_vis"
    )


def test_a_new_project_is_picked_up_and_name_clashes_stop(tmp_path):
    project_packages = _setup_module().project_packages
    for folder in ("projects/NewMethod/new_method/heads", "projects/NewMethod/configs"):
        os.makedirs(tmp_path / folder)
    (tmp_path / "projects/NewMethod/new_method/__init__.py").write_text("")
    (tmp_path / "projects/NewMethod/new_method/heads/__init__.py").write_text("")
    packages, package_dir = project_packages(str(tmp_path))
    assert packages == ["new_method", "new_method.heads"]
    assert package_dir == {"new_method": os.path.join("projects", "NewMethod", "new_method")}

    os.makedirs(tmp_path / "projects/Other/new_method")
    (tmp_path / "projects/Other/new_method/__init__.py").write_text("")
    with pytest.raises(RuntimeError, match="both ship a package named 'new_method'"):
        project_packages(str(tmp_path))


def test_train_net_files_do_not_edit_sys_path():
    for project in os.listdir(os.path.join(REPO, "projects")):
        path = os.path.join(REPO, "projects", project, "train_net.py")
        if os.path.isfile(path):
            with open(path) as f:
                assert "sys.path" not in f.read(), path


USER_SCRIPT = """
from visolo import add_visolo_config
from vis_core.engine import build_video_cfg, launch_train_net, train_or_evaluate


def main(args):
    cfg = build_video_cfg(args.config_file, args.opts, add_visolo_config)
    print("classes", cfg.MODEL.VISOLO.NUM_CLASSES, "train", list(cfg.DATASETS.TRAIN))


if __name__ == "__main__":
    launch_train_net(main)
"""


def test_users_own_train_script_runs_from_another_folder(tmp_path):
    script = tmp_path / "my_train.py"
    script.write_text(USER_SCRIPT)
    config = os.path.join(REPO, "projects/VISOLO/configs/synthvis/VISOLO_R18.yaml")
    run = subprocess.run(
        [sys.executable, str(script), "--config-file", config, "MODEL.VISOLO.NUM_CLASSES", "3"],
        cwd=str(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "classes 3 train ['synthvis_train']" in run.stdout
