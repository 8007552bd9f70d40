"""Task sequences declared in TOML files, the shipped examples, and the `mixed` stream."""

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from hywu_bench.cli import app
from hywu_bench.config import RunSpec, resolve_spec
from hywu_bench.data import dataset_tensors
from hywu_bench.errors import UserError
from hywu_bench.registry import SCENARIOS, load_builtins
from scenarios import transforms as T
from scenarios.sequence import load_sequence

load_builtins()
EXAMPLES = Path(__file__).resolve().parents[1] / "scenarios" / "examples"


def write(tmp_path, text, name="stream.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def build_file(path, seed=0):
    spec = resolve_spec(flags={"scenario": "sequence", "seed": seed}, sets=[f"scenario.path={path}"])
    return SCENARIOS.build("sequence", spec, **spec.scenario_options)


def columns(stream, k):
    return dataset_tensors(stream[k].dataset)


TWO = """
name = "two"
[defaults]
dataset = "digits"
train_size = 60
test_size = 30

[[experience]]
classes = [0, 1, 2]

[[experience]]
classes = [3, 4]
transform = [{ name = "permute" }, { name = "contrast", factor = 0.5 }]
label_map = { "3" = 0, "4" = 1 }
label_offset = 5
"""


def test_a_file_resolves_sizes_classes_transforms_and_labels(tmp_path):
    s = build_file(write(tmp_path, TWO))
    info = s.info
    assert info.name == "two" and info.setting == "class" and info.n_classes == 7
    assert [(e.n_train, e.n_test) for e in info.experiences] == [(60, 30), (60, 30)]
    assert info.experiences[0].classes == (0, 1, 2) and info.experiences[1].classes == (5, 6)
    assert (info.experiences[1].transform.startswith("permute(seed=")
            and "contrast(factor=0.5)" in info.experiences[1].transform)
    resolved = info.options["resolved"]
    assert len(resolved["sha256"]) == 64 and resolved["experiences"][1]["label_map"][3:5] == [0, 1]
    seed = resolved["experiences"][1]["transform"][0]["seed"]
    x, y, t = columns(s.train_stream, 0)
    assert set(y.tolist()) <= {0, 1, 2} and x.shape == (60, 1, 8, 8)
    # the permutation is the one recorded: same seed -> same stream, another run seed -> another permutation
    again = build_file(write(tmp_path, TWO))
    assert torch.equal(columns(again.train_stream, 1)[0], columns(s.train_stream, 1)[0])
    other = build_file(write(tmp_path, TWO), seed=1)
    assert other.info.options["resolved"]["experiences"][1]["transform"][0]["seed"] != seed
    assert T.pixel_permutation(8, 8, seed).shape == (64,)


def test_users_carry_tokens_and_a_setting_can_be_forced(tmp_path):
    path = write(tmp_path, """
setting = "task"
[defaults]
dataset = "digits"
train_size = 40
[[experience]]
user = 0
[[experience]]
user = 2
label_map = [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]
""")
    s = build_file(path)
    assert s.info.setting == "task" and s.info.condition_dim == 3 and s.info.input_shape == (2, 8, 8)
    x0, y0, c0, t0 = columns(s.test_stream, 0)
    x1, y1, c1, t1 = columns(s.test_stream, 1)
    assert torch.equal(c1, torch.eye(3)[2].expand(len(y1), 3)) and int(t1[0]) == 1
    assert torch.equal(x0[:, :1], x1[:, :1]) and torch.equal(y1, 9 - y0)  # same test images, opposed labels


@pytest.mark.parametrize("example", ["rotating_digits.toml", "conflicting_users.toml"])
def test_shipped_examples_build(example, request):
    if "fashion" in (EXAMPLES / example).read_text():
        request.getfixturevalue("fashion_mnist")
    s = build_file(EXAMPLES / example)
    info = s.info
    assert info.setting == "domain" and info.n_experiences >= 3
    if example == "rotating_digits.toml":
        assert info.experiences[2].transform == "rotate(degrees=40) + blur(sigma=0.6)"
    else:
        assert [e.user for e in info.experiences] == [0, 1, 0] and info.condition_dim == 2


@pytest.mark.parametrize("body, message", [
    ("[[experience]]\ndataset = \"digits\"\n\n[[experience]]\ndataset = \"digts\"\n",
     "line 5: experience 2: unknown dataset 'digts'. Did you mean 'digits'?"),
    ("[[experience]]\ndataset = \"digits\"\nclases = [1]\n",
     "line 3: experience 1: unknown key 'clases'. Did you mean 'classes'?"),
    ("[[experience]]\ndataset = \"digits\"\nclasses = [1, 10]\n",
     "line 3: experience 1: class 10 is outside digits's classes 0..9"),
    ("[[experience]]\ndataset = \"digits\"\ntransform = \"rotat\"\n",
     "experience 1: unknown transform 'rotat'. Did you mean 'rotate'?"),
    ("[[experience]]\ndataset = \"digits\"\ntransform = { name = \"blur\" }\n", "transform 'blur' needs sigma"),
    ("[[experience]]\ndataset = \"digits\"\ntransform = { name = \"blur\", sigma = -1 }\n",
     "sigma must be a number >= 0"),
    ("[[experience]]\ndataset = \"digits\"\ntransform = { name = \"rotate\", angle = 3 }\n",
     "has no parameter 'angle'"),
    ("[[experience]]\ndataset = \"digits\"\nuser = 0\n[[experience]]\ndataset = \"digits\"\n",
     "line 4: experience 2: has no user"),
    ("[[experience]]\ndataset = \"digits\"\nlabel_map = [1, 0]\n", "label_map has 2 entries but the dataset has 10"),
    ("[[experience]]\n", "experience 1: names no dataset"),
    ("colour = 1\n[[experience]]\ndataset = \"digits\"\n", "line 1: unknown top-level key 'colour'"),
    ("name = \"x\"\n", "declares no experiences"),
    ("[[experience]\n", "is not valid TOML"),
])
def test_bad_files_are_refused_before_anything_loads(tmp_path, body, message):
    path = write(tmp_path, body)
    with pytest.raises(UserError) as err:
        resolve_spec(flags={"scenario": "sequence"}, sets=[f"scenario.path={path}"])
    assert message in str(err.value) and str(path) in str(err.value)


def test_missing_file_and_missing_path():
    with pytest.raises(UserError, match="does not exist"):
        load_sequence("/nonexistent/stream.toml")
    with pytest.raises(UserError, match="needs a file"):
        SCENARIOS.build("sequence", RunSpec(scenario="sequence"))


def test_cli_reports_a_bad_file_in_one_line_with_exit_code_2(tmp_path):
    path = write(tmp_path, "[[experience]]\ndataset = \"digits\"\nclasses = [11]\n")
    result = CliRunner().invoke(app, ["run", "--scenario", "sequence", "--set", f"scenario.path={path}",
                                      "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "class 11 is outside" in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_a_sequence_runs_and_saves_the_resolved_file(tmp_path):
    import json

    from hywu_bench.runner import run

    path = write(tmp_path, TWO)
    spec = resolve_spec(flags={"scenario": "sequence", "epochs": 1}, sets=[f"scenario.path={path}"])
    record = run(spec, tmp_path / "out")
    assert record.R.shape == (2, 2)
    config = json.loads((record.path / "config.json").read_text())
    assert config["scenario"]["options"]["resolved"]["experiences"][1]["label_offset"] == 5


def test_mixed_concatenates_datasets_on_their_own_outputs(fashion_mnist):
    s = SCENARIOS.build("mixed", RunSpec(scenario="mixed"), experiences_per_dataset=2, train_per_experience=100,
                        test_per_experience=50)
    info = s.info
    assert info.setting == "class" and info.n_classes == 20 and info.input_shape == (1, 28, 28)
    assert [e.dataset for e in info.experiences] == ["digits", "digits", "fashion-mnist", "fashion-mnist"]
    assert [e.classes for e in info.experiences] == [tuple(range(0, 5)), tuple(range(5, 10)),
                                                     tuple(range(10, 15)), tuple(range(15, 20))]
    assert info.experiences[0].transform == "resize(28x28x1)" and info.experiences[2].transform == "none"
    x, y, t = columns(s.train_stream, 3)
    assert x.shape == (100, 1, 28, 28) and set(y.tolist()) <= set(range(15, 20))
    assert [(e.n_train, e.n_test) for e in info.experiences][2:] == [(100, 50), (100, 50)]
    with pytest.raises(UserError, match="unknown dataset 'fminst'. Did you mean 'fmnist'"):
        SCENARIOS.options("mixed", {"datasets": "digits,fminst"})
