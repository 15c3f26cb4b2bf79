"""Each project's train_net.py, as a user runs it: train, --resume, --eval-only, wrong weights."""

import os

import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.engine import default_argument_parser
from detectron2.modeling import build_model

from tests.conftest import write_tiny_ytvis
from vis_core.data import register_ytvis_instances
from vis_core.engine import build_video_cfg
from vis_core.engine.project import load_train_net

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROJECTS = {
    "VISOLO": (
        "projects/VISOLO/configs/synthvis/VISOLO_R18.yaml",
        ["MODEL.VISOLO.HIDDEN_DIM", "32", "MODEL.VISOLO.TRACK_DIM", "32",
         "MODEL.VISOLO.GRID_NUM", "[4, 6]", "MODEL.VISOLO.NUM_CLASSES", "2"],
    ),
    "Mask2Former_VIS": (
        "projects/Mask2Former_VIS/configs/synthvis/Mask2Former_VIS_R18.yaml",
        ["MODEL.MASK2FORMER_VIS.NUM_CLASSES", "2", "MODEL.MASK2FORMER_VIS.NUM_QUERIES", "6",
         "MODEL.MASK2FORMER_VIS.HIDDEN_DIM", "64", "MODEL.MASK2FORMER_VIS.DIM_FEEDFORWARD", "64",
         "MODEL.MASK2FORMER_VIS.DEC_LAYERS", "3", "MODEL.MASK2FORMER_VIS.TRAIN_NUM_POINTS", "64",
         "MODEL.MASK2FORMER_VIS.PIXEL_DECODER.CONVS_DIM", "64",
         "MODEL.MASK2FORMER_VIS.PIXEL_DECODER.MASK_DIM", "64",
         "MODEL.MASK2FORMER_VIS.PIXEL_DECODER.ENC_LAYERS", "1",
         "MODEL.MASK2FORMER_VIS.PIXEL_DECODER.ENC_DIM_FEEDFORWARD", "64"],
    ),
}  # fmt: skip


def _args(config, opts, *flags):
    return default_argument_parser().parse_args(["--config-file", config, *flags, *opts])


def _tiny_run(tmp_path, project, name, num_videos=2):
    """(config file, opts) of a 2-iteration run of ``project`` on a tiny set written under
    ``tmp_path`` and registered as ``name`` from the config alone (DATASETS.YTVIS_JSON)."""
    json_path, image_root, _ = write_tiny_ytvis(str(tmp_path / "data"), num_videos=num_videos)
    config, tiny = PROJECTS[project]
    out = str(tmp_path / "out")
    opts = tiny + [
        "DATASETS.YTVIS_JSON", str([[name, json_path, image_root]]),
        "DATASETS.TRAIN", f"('{name}',)", "DATASETS.TEST", f"('{name}',)",
        "DATALOADER.NUM_WORKERS", "0", "INPUT.MIN_SIZE_TRAIN", "(48,)", "INPUT.MAX_SIZE_TRAIN", "64",
        "INPUT.MIN_SIZE_TEST", "48", "INPUT.MAX_SIZE_TEST", "64", "SOLVER.IMS_PER_BATCH", "1",
        "SOLVER.MAX_ITER", "2", "SOLVER.STEPS", "()", "SOLVER.WARMUP_ITERS", "0",
        "SOLVER.CHECKPOINT_PERIOD", "1", "TEST.EVAL_PERIOD", "0", "OUTPUT_DIR", out,
    ]  # fmt: skip
    return os.path.join(REPO, config), opts


def _remove(name):
    for catalog in (DatasetCatalog, MetadataCatalog):
        if name in catalog.list():
            catalog.remove(name)


@pytest.mark.parametrize("project", sorted(PROJECTS))
def test_train_resume_and_eval_only_through_train_net(tmp_path, project):
    name = f"launcher_tiny_{project}"
    _remove(name)
    config, opts = _tiny_run(tmp_path, project, name)
    out = str(tmp_path / "out")
    train_net = load_train_net(config)

    train_net.main(_args(config, opts))  # trains, then evaluates on DATASETS.TEST
    assert os.path.isfile(os.path.join(out, "model_final.pth"))
    results_json = os.path.join(out, "inference", name, "results.json")
    assert os.path.isfile(results_json)
    os.remove(results_json)

    # --resume with a longer schedule starts after the last checkpoint, not from scratch: the
    # checkpoints of iterations 0 and 1 are not written again.
    first = os.path.join(out, "model_0000000.pth")
    stamp = os.path.getmtime(first)
    train_net.main(_args(config, opts + ["SOLVER.MAX_ITER", "3"], "--resume"))
    assert os.path.getmtime(first) == stamp
    assert torch.load(os.path.join(out, "model_final.pth"), weights_only=False)["iteration"] == 2

    weights = ["MODEL.WEIGHTS", os.path.join(out, "model_final.pth")]
    results = train_net.main(_args(config, opts + weights, "--eval-only"))
    assert set(results["segm"]) >= {"AP", "AP50", "AP75", "AR1", "AR10"}
    assert os.path.isfile(results_json)
    with open(os.path.join(out, "log.txt")) as f:  # the evaluator's tables reach the log file
        log = f.read()
    assert f"Evaluation of {name}:" in log and "Per-category segm AP:" in log

    # Weights of the other project are refused with a message, not evaluated with random heads.
    other = next(p for p in PROJECTS if p != project)
    other_cfg, other_tiny = PROJECTS[other]
    other_net = load_train_net(os.path.join(REPO, other_cfg))
    other_model = build_model(other_net.setup_cfg(os.path.join(REPO, other_cfg), other_tiny))
    path = str(tmp_path / "other.pth")
    torch.save({"model": other_model.state_dict()}, path)
    with pytest.raises(ValueError, match="do not fit"):
        train_net.main(_args(config, opts + ["MODEL.WEIGHTS", path], "--eval-only"))


def test_config_registers_its_data_sets(tmp_path):
    from visolo import add_visolo_config

    from vis_core.engine.project import setup_project_cfg

    a = write_tiny_ytvis(str(tmp_path / "a"), num_videos=1)
    b = write_tiny_ytvis(str(tmp_path / "b"), num_videos=2)
    config = os.path.join(REPO, PROJECTS["VISOLO"][0])
    _remove("cfg_set_a"), _remove("cfg_set_b")
    key = ["DATASETS.YTVIS_JSON", str([["cfg_set_a", a[0], a[1]], ["cfg_set_b", b[0], b[1]]])]
    cfg = build_video_cfg(config, key + ["DATASETS.TEST", "('cfg_set_b',)"], add_visolo_config)
    assert len(DatasetCatalog.get("cfg_set_a")) == 1 and len(DatasetCatalog.get("cfg_set_b")) == 2
    assert MetadataCatalog.get("cfg_set_b").json_file == b[0]
    assert cfg.DATASETS.TEST == ("cfg_set_b",)
    # Again, as every process of launch and every tool does: a no-op; the tools' path too.
    build_video_cfg(config, key, add_visolo_config)
    assert setup_project_cfg(config, key).DATASETS.YTVIS_JSON[1][0] == "cfg_set_b"
    register_ytvis_instances("cfg_set_a", {}, a[0], a[1])
    # The same name with other files names both.
    clash = ["DATASETS.YTVIS_JSON", str([["cfg_set_a", b[0], b[1]]])]
    with pytest.raises(ValueError, match="'cfg_set_a' is already registered") as info:
        build_video_cfg(config, clash, add_visolo_config)
    assert a[0] in str(info.value) and b[0] in str(info.value)
    # A built-in name with other files, too.
    clash = ["DATASETS.YTVIS_JSON", str([["synthvis_train", b[0], b[1]]])]
    with pytest.raises(ValueError, match="'synthvis_train' is already registered"):
        build_video_cfg(config, clash, add_visolo_config)
    bad = ["DATASETS.YTVIS_JSON", str([["only_a_name", a[0]]])]
    with pytest.raises(
        ValueError, match=r"DATASETS.YTVIS_JSON\[0\].*\[name, json_file, image_root\]"
    ):
        build_video_cfg(config, bad, add_visolo_config)


@pytest.mark.parametrize("project", sorted(PROJECTS))
def test_class_count_is_checked_before_training_and_before_inference(tmp_path, project):
    name = f"launcher_classes_{project}"
    _remove(name)
    config, opts = _tiny_run(tmp_path, project, name)
    key = {
        "VISOLO": "MODEL.VISOLO.NUM_CLASSES",
        "Mask2Former_VIS": "MODEL.MASK2FORMER_VIS.NUM_CLASSES",
    }
    wrong = opts + [key[project], "3"]  # the tiny set has 2 classes
    train_net = load_train_net(config)
    message = rf"{key[project]} = 3, but data set '{name}' has 2 classes"
    with pytest.raises(ValueError, match=message + ".*stopped before training"):
        train_net.main(_args(config, wrong))
    assert not os.path.exists(os.path.join(str(tmp_path / "out"), "model_0000000.pth"))
    # Weights that fit the 3-class model still stop before inference, with no results.json.
    path = str(tmp_path / "three_classes.pth")
    torch.save({"model": build_model(train_net.setup_cfg(config, wrong)).state_dict()}, path)
    with pytest.raises(ValueError, match=message + ".*stopped before evaluation"):
        train_net.main(_args(config, wrong + ["MODEL.WEIGHTS", path], "--eval-only"))
    assert not os.path.exists(os.path.join(str(tmp_path / "out"), "inference", name))


def test_unknown_config_key_suggests_the_nearest(tmp_path):
    from visolo import add_visolo_config

    from vis_core.engine.launcher import UnknownConfigKeyError

    config = os.path.join(REPO, PROJECTS["VISOLO"][0])
    with pytest.raises(UnknownConfigKeyError, match=r"opts: unknown config key 'SOLVER.MAX_ITERS'; "
                       r"did you mean 'SOLVER.MAX_ITER'\?"):  # fmt: skip
        build_video_cfg(config, ["SOLVER.MAX_ITERS", "3"], add_visolo_config)
    bad = tmp_path / "bad.yaml"
    bad.write_text(f'_BASE_: "{config}"\nMODEL:\n  VISOLO:\n    GRIDNUM: [3, 3]\n')
    with pytest.raises(KeyError, match=r"bad.yaml: unknown config key 'MODEL.VISOLO.GRIDNUM'; "
                       r"did you mean 'MODEL.VISOLO.GRID_NUM'\?"):  # fmt: skip
        build_video_cfg(str(bad), [], add_visolo_config)
