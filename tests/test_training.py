"""Classifier training: it learns, it is seeded, and an interrupted run resumes exactly."""

import copy

import pytest
import torch

from camflow.data.voc import SyntheticDataset
from camflow.methods.base import load_classifier, train_method
from camflow.runtime import load_checkpoint
from camflow.trainer import resume_path
from fixtures import make_synthetic_fixture

CFG = {
    "method": "cam",
    "backbone": {"arch": "resnet_small", "strides": [2, 2, 2, 1], "widths": [4, 4, 8, 8],
                 "blocks": [1, 1, 1, 1], "weights": "none"},
    "freeze_bn_stats": False,
    "trainable_from_stage": 1,
    "optimizer": {"lr": 0.05, "head_lr_mult": 10, "momentum": 0.9, "weight_decay": 1e-4,
                  "poly_power": 0.9},
    "batch_size": 1,
    "epochs": 3,
    "augment": {"resize_long": [20, 28], "resample": "bicubic", "flip": True, "crop": 24},
    "seed": 3,
}
CPU = torch.device("cpu")


@pytest.fixture
def dataset(tmp_path):
    return SyntheticDataset(make_synthetic_fixture(tmp_path / "data"))


def states_equal(a: dict, b: dict) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


def weights(path) -> dict:
    return load_checkpoint(path)["networks"]["classifier"]


def test_interrupted_training_resumes_to_the_same_weights(dataset, tmp_path) -> None:
    full = tmp_path / "full" / "classifier.pt"
    train_method(CFG, dataset, "train", full, CPU, progress=False)

    part = tmp_path / "part" / "classifier.pt"
    train_method(CFG, dataset, "train", part, CPU, progress=False, stop_after_epochs=1)
    assert not part.exists() and resume_path(part).exists()
    per_epoch = len(dataset.ids("train"))  # batch 1
    assert load_checkpoint(resume_path(part))["step"] == per_epoch
    train_method(CFG, dataset, "train", part, CPU, progress=False)
    assert part.exists() and not resume_path(part).exists()
    assert states_equal(weights(full), weights(part))


def test_resume_state_of_another_config_is_ignored(dataset, tmp_path) -> None:
    out = tmp_path / "classifier.pt"
    train_method(CFG, dataset, "train", out, CPU, progress=False, stop_after_epochs=2)
    other = copy.deepcopy(CFG)
    other["optimizer"]["lr"] = 0.01
    train_method(other, dataset, "train", out, CPU, progress=False)
    reference = tmp_path / "ref.pt"
    train_method(other, dataset, "train", reference, CPU, progress=False)
    assert states_equal(weights(out), weights(reference))


def test_training_changes_weights_and_checkpoint_reloads(dataset, tmp_path) -> None:
    out = tmp_path / "classifier.pt"
    train_method(CFG, dataset, "train", out, CPU, progress=False)
    ckpt = load_checkpoint(out)
    assert ckpt["class_names"] == list(dataset.class_names)
    model = load_classifier(out, CPU)
    assert not model.training
    assert states_equal(model.state_dict(), ckpt["networks"]["classifier"])
    torch.manual_seed(CFG["seed"])
    from camflow.models import build_classifier

    init = build_classifier(CFG, dataset.num_classes).state_dict()
    assert not torch.equal(init["head.weight"], ckpt["networks"]["classifier"]["head.weight"])


CANCELLED_SCRIPT = """
import sys, time
from camflow.io import atomic_path
from camflow.runtime import run_logged

def stage(path):
    with atomic_path(path) as tmp:
        tmp.write_text("half")
        print("writing", flush=True)
        time.sleep(60)

run_logged(None, stage, sys.argv[1])
"""


def test_a_cancelled_job_leaves_no_temporary_file(tmp_path) -> None:
    import signal
    import subprocess
    import sys

    out = tmp_path / "artifact.txt"
    proc = subprocess.Popen([sys.executable, "-c", CANCELLED_SCRIPT, str(out)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 128 + signal.SIGTERM
    assert list(tmp_path.iterdir()) == []


WORKER_SCRIPT = """
import multiprocessing, os, signal, time
from camflow.runtime import run_logged

def child():
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    time.sleep(30)

def stage():
    worker = multiprocessing.get_context("fork").Process(target=child)
    worker.start()              # forked after run_logged installed its handler
    time.sleep(0.5)
    os.kill(worker.pid, signal.SIGTERM)    # what Pool.terminate() sends to its workers
    worker.join(20)
    print(worker.exitcode)

run_logged(None, stage)
"""


def test_forked_workers_still_die_of_sigterm() -> None:
    """Forked workers get the default SIGTERM action, not the job's Python handler: with
    the handler a SIGTERM from Pool.terminate() could land just before a worker blocked
    on the task-queue lock and be lost, and eval_cams then waited for that worker forever."""
    import signal
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", WORKER_SCRIPT], capture_output=True,
                         text=True, timeout=60, check=True).stdout.split()
    assert out == [str(-signal.SIGTERM)]


def test_a_resumed_run_keeps_the_epochs_before_the_interruption(dataset, tmp_path) -> None:
    """Per-epoch checkpoints (``keep_epochs``) survive a resume although Snakemake deletes
    the job's outputs — the epochs folder among them — before rerunning it, and equal an
    uninterrupted run's."""
    full = tmp_path / "full" / "classifier.pt"
    train_method(CFG, dataset, "train", full, CPU, progress=False,
                 epochs_dir=full.parent / "epochs")
    part = tmp_path / "part" / "classifier.pt"
    epochs = part.parent / "epochs"
    train_method(CFG, dataset, "train", part, CPU, progress=False, stop_after_epochs=2,
                 epochs_dir=epochs)
    assert not epochs.exists()                       # nothing half-written in the output
    train_method(CFG, dataset, "train", part, CPU, progress=False, epochs_dir=epochs)
    names = ["epoch01.pt", "epoch02.pt", "epoch03.pt"]
    assert sorted(p.name for p in epochs.iterdir()) == names
    assert sorted(p.name for p in (full.parent / "epochs").iterdir()) == names
    for name in names:
        assert states_equal(weights(full.parent / "epochs" / name), weights(epochs / name))
    assert not any(p.name.endswith(".partial") for p in part.parent.iterdir())
