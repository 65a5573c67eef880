"""Security: weights, checkpoints and saved models load without executing code, and the UI
binds to 127.0.0.1 unless asked otherwise.

Each refusal test writes a real malicious pickle whose payload creates a marker file, shows
that an unsafe load (``torch.load(weights_only=False)``) does run it, then checks that
autotransfer refuses the file with a message saying why and what to do, and that the marker
was never created.
"""

from __future__ import annotations

import os
import pickle
import socket
import sys
from pathlib import Path

import pytest
import torch

import autotransfer
from autotransfer.backbones.load import load_backbone, resolve_backbones
from autotransfer.backbones.spec import BackboneSpec, WeightsRef
from autotransfer.backbones.weight_files import read_state_dict
from autotransfer.backbones.weight_sources import TimmHubSource
from autotransfer.errors import AutoTransferError, WeightsUnavailableError
from autotransfer.model_files import ModelFileError

from .support import free_port, serving


class Payload:
    """Unpickling this runs ``exec``, which creates the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').close()",))


def _write(path: Path, marker: Path, how: str) -> Path:
    obj = {"state_dict": {"conv.weight": torch.zeros(2, 2), "extra": Payload(marker)}}
    if how == "torch_zip":
        torch.save(obj, path)
    elif how == "torch_legacy":
        torch.save(obj, path, _use_new_zipfile_serialization=False)
    else:  # a plain pickle
        path.write_bytes(pickle.dumps(obj, protocol=2))
    return path


@pytest.fixture
def marker(tmp_path):
    return tmp_path / "PAYLOAD_RAN"


@pytest.fixture(params=["torch_zip", "torch_legacy", "plain_pickle"])
def evil(request, tmp_path, marker):
    """A factory of malicious checkpoints; the payload is checked to be live once."""
    how = request.param
    probe = _write(tmp_path / "probe.pt", marker, how)
    if how == "plain_pickle":
        pickle.loads(probe.read_bytes())
    else:
        torch.load(probe, weights_only=False)
    assert marker.exists(), "the payload does not run, so the test would prove nothing"
    marker.unlink()
    probe.unlink()
    return lambda path: _write(path, marker, how)


@pytest.mark.parametrize("suffix", [".pth", ".pt", ".bin", ".safetensors"])
def test_a_weights_file_with_pickled_code_is_refused(evil, tmp_path, marker, suffix):
    path = evil(tmp_path / f"weights{suffix}")
    with pytest.raises(WeightsUnavailableError) as info:
        read_state_dict(path)
    message = str(info.value)
    assert path.name in message and "safetensors" in message
    if suffix != ".safetensors":
        assert "never runs code" in message and "weights_only=False" in message
    assert not marker.exists()


def test_a_backbone_from_a_pickled_file_is_refused(evil, tmp_path, marker):
    path = evil(tmp_path / "resnet.pth")
    (spec,) = resolve_backbones([f"file:{path}#test_resnet"])
    with pytest.raises(AutoTransferError, match="cannot be read safely"):
        load_backbone(spec)
    assert not marker.exists()


def test_timm_hub_weights_with_pickled_code_are_refused(evil, tmp_path, marker, monkeypatch):
    import huggingface_hub.constants as hf

    commit = "0" * 40
    repo = tmp_path / "hub" / "models--timm--test_resnet.r160_in1k"
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    evil(repo / "snapshots" / commit / "pytorch_model.bin")
    monkeypatch.setattr(hf, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(hf, "HF_HUB_OFFLINE", True)
    spec = BackboneSpec("timm:test_resnet.r160_in1k", "test_resnet.r160_in1k", WeightsRef("timm"))
    assert TimmHubSource().is_available(spec)
    with pytest.raises(WeightsUnavailableError, match="test_resnet.r160_in1k"):
        TimmHubSource().load_state_dict(spec)
    assert not marker.exists()


def _saved_model(folder: Path) -> Path:
    import timm

    from autotransfer.model import Classifier, Preprocessing

    torch.manual_seed(0)
    module = timm.create_model("test_resnet", num_classes=2)
    prep = Preprocessing(resolution=32, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    clf = Classifier(module, classes=["a", "b"], preprocessing=prep, arch="test_resnet")
    return clf.save(folder)


@pytest.mark.parametrize("where", ["folder", "file", "run_folder"])
def test_a_pickled_model_checkpoint_is_refused(evil, tmp_path, marker, where):
    folder = tmp_path / "run" / "model" if where == "run_folder" else tmp_path / "old"
    folder.mkdir(parents=True)
    path = evil(folder / "model.pt")
    target = {"folder": folder, "file": path, "run_folder": tmp_path / "run"}[where]
    refused = "Refusing to load the pickled checkpoint model.pt"
    with pytest.raises(ModelFileError, match=refused) as info:
        autotransfer.load(target)
    assert "can execute arbitrary code" in str(info.value)
    assert "weights_only=True" in str(info.value)  # the way out
    assert not marker.exists()


@pytest.mark.parametrize("checksum", [True, False])
def test_a_saved_model_whose_weights_were_swapped_for_a_pickle_is_refused(
    evil, tmp_path, marker, checksum
):
    import json

    folder = _saved_model(tmp_path / "m")
    autotransfer.load(folder)  # the genuine one loads
    if not checksum:  # as saved before the checksum existed: safetensors itself refuses
        config = json.loads((folder / "autotransfer.json").read_text())
        del config["weights_sha256"]
        (folder / "autotransfer.json").write_text(json.dumps(config))
    evil(folder / "model.safetensors")
    match = "is damaged: its SHA-256" if checksum else "Cannot rebuild the model"
    with pytest.raises(ModelFileError, match=match):
        autotransfer.load(folder)
    assert not marker.exists()


# the UI ------------------------------------------------------------------------------------


def test_the_ui_command_binds_to_localhost_unless_asked():
    from autotransfer.cli.main import build_parser

    parser = build_parser()
    assert parser.parse_args(["ui", "runs/x"]).host == "127.0.0.1"
    assert parser.parse_args(["ui", "runs/x", "--host", "0.0.0.0"]).host == "0.0.0.0"


def _listening(port: int) -> set[str]:
    """Addresses with a TCP socket listening on ``port`` (from /proc/net/tcp and tcp6)."""
    out = set()
    for table, width in (("/proc/net/tcp", 4), ("/proc/net/tcp6", 16)):
        if not os.path.exists(table):
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            ip_hex, port_hex = local.split(":")
            if state != "0A" or int(port_hex, 16) != port:  # 0A: LISTEN
                continue
            raw = bytes.fromhex(ip_hex)
            raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            family = socket.AF_INET if width == 4 else socket.AF_INET6
            out.add(socket.inet_ntop(family, raw))
    return out


@pytest.mark.skipif(not os.path.exists("/proc/net/tcp"), reason="reads Linux's socket table")
@pytest.mark.parametrize("host", [None, "127.0.0.2"])
def test_autotransfer_ui_listens_on_localhost_only_unless_asked(tmp_path, host):
    from mlflow import MlflowClient

    run = tmp_path / "run"
    run.mkdir()
    MlflowClient(f"sqlite:///{run / 'mlflow.db'}").search_experiments()  # creates the store
    port = free_port()
    cmd = [sys.executable, "-m", "autotransfer", "ui", str(run), "--port", str(port)]
    if host:
        cmd += ["--host", host]
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    expected = host or "127.0.0.1"
    with serving(cmd, url=f"http://{expected}:{port}", log=tmp_path / "ui.log", env=env):
        assert _listening(port) == {expected}
