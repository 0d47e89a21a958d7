import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from vdeblur.checkpoint import load_checkpoint
from vdeblur.cli import main
from vdeblur.errors import VdeblurError
from vdeblur.network import ModelConfig
from vdeblur.training import Recipe, Trainer, gradient_loss, load_run_state, poly_lr, recipe_loss, train

TINY = ModelConfig(widths=(4, 8, 16), blocks_per_group=1, attention_reduction=4, global_residual=True).to_dict()
REPO = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_thread")


def _recipe(**kw):
    base = dict(steps=6, batch=2, crop=32, lr=1e-3, model=TINY, seed=1)
    base.update(kw)
    return Recipe(**base)


def test_gradient_loss_is_zero_for_equal_images_and_sees_edges():
    x = torch.rand(1, 3, 16, 16)
    assert float(gradient_loss(x, x)) == 0.0
    flat = torch.full_like(x, 0.5)
    assert float(gradient_loss(flat, x)) > 0.0
    assert float(gradient_loss(flat, flat + 0.1)) == pytest.approx(0.0, abs=1e-12)  # offsets have no gradient


def test_multiscale_loss_covers_every_scale():
    sharp = torch.rand(1, 3, 32, 32)
    outs = [torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 16, 16), sharp.clone()]
    loss, parts = recipe_loss(outs, sharp, grad_weight=2.5)
    assert parts["grad"] == 0.0 and parts["mse"] > 0.0
    assert float(loss) == pytest.approx(parts["mse"])


def test_poly_decay():
    assert poly_lr(0, 1e-4, 100, 0.3) == 1e-4
    assert poly_lr(50, 1e-4, 100, 0.3) == pytest.approx(1e-4 * 0.5**0.3)
    assert poly_lr(100, 1e-4, 100, 0.3) == 0.0


def test_loss_goes_down_on_a_fixed_batch():
    torch.manual_seed(0)
    sharp = torch.rand(2, 3, 32, 32)
    blur = torch.nn.functional.avg_pool2d(sharp, 5, stride=1, padding=2, count_include_pad=False)
    trainer = Trainer(_recipe(steps=1000, lr=3e-3), torch.device("cpu"), "fp32")
    losses = [trainer.train_step(blur, sharp)[0] for _ in range(40)]
    assert sum(losses[-5:]) / 5 < 0.85 * sum(losses[:5]) / 5


def test_resume_is_exact(tmp_path):
    recipe = _recipe()
    straight = train(recipe, tmp_path / "a", progress=False)
    train(recipe, tmp_path / "b", progress=False, stop_at_step=3)
    resumed = train(recipe, tmp_path / "b", resume=True, progress=False)
    assert straight.step == resumed.step == 6
    sa, sb = straight.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    oa, ob = straight.optimizer.state_dict()["state"], resumed.optimizer.state_dict()["state"]
    assert all(torch.equal(oa[i]["exp_avg_sq"], ob[i]["exp_avg_sq"]) for i in oa)


def test_checkpoint_files(tmp_path):
    run = tmp_path / "run"
    train(_recipe(steps=2), run, progress=False)
    latest = json.loads((run / "latest.json").read_text())
    assert latest["step"] == 2
    model = load_checkpoint(run / latest["weights"])  # a normal vdeblur checkpoint
    assert model.config.global_residual and model.config.widths == (4, 8, 16)
    weights, state = load_run_state(run)  # the sidecar loads with weights_only=True
    assert state["step"] == 2 and "optimizer" in state
    assert not list(run.glob("*.partial"))


def test_cli_trains_and_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "cli"
    args = ["train", "--out", str(out), "--widths", "4", "8", "16", "--blocks", "1", "--crop", "32",
            "--batch", "1", "--steps", "2", "--no-progress", "--seed", "3"]
    assert main(args) == 0
    assert (out / "step-0000002.safetensors").is_file()
    assert main(args) == 1
    assert "already holds a run" in capsys.readouterr().err
    assert main(["train", "--out", str(out), "--resume", "--steps", "5"]) == 1
    assert "drop --steps" in capsys.readouterr().err
    # zeros and --no-x were taken as "not given" and silently ignored
    for extra, flag in ((["--seed", "0"], "--seed"), (["--no-residual"], "--no-residual"),
                        (["--synthetic-fraction", "0"], "--synthetic-fraction"), (["--lr", "0"], "--lr")):
        assert main(["train", "--out", str(out), "--resume", *extra]) == 1
        assert f"drop {flag}" in capsys.readouterr().err


def _damage_state(run, change):
    latest = json.loads((run / "latest.json").read_text())
    path = run / latest["state"]
    state = torch.load(path, weights_only=True)
    change(state)
    torch.save(state, path)


@pytest.mark.parametrize("change, message", [
    (lambda s: s.pop("optimizer"), "damaged training state"),
    (lambda s: s.update(recipe=json.dumps({**json.loads(s["recipe"]), "bogus": 1})), "another vdeblur version"),
    (lambda s: s.update(step="x"), "damaged training state"),
    (lambda s: s["optimizer"].update(param_groups=[]), "does not fit its weights"),
])
def test_a_damaged_or_foreign_state_is_one_line(tmp_path, capsys, change, message):
    run = tmp_path / "run"
    train(_recipe(steps=1, batch=1), run, progress=False)
    _damage_state(run, change)
    capsys.readouterr()
    assert main(["train", "--out", str(run), "--resume", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err


def test_a_pickle_refused_is_one_line_without_torchs_warning(tmp_path, capsys):
    import pickle

    run = tmp_path / "run"
    train(_recipe(steps=1, batch=1), run, progress=False)
    state = run / json.loads((run / "latest.json").read_text())["state"]
    state.write_bytes(pickle.dumps({"format": "vdeblur-train-state", "x": Path("/")}, protocol=4))
    capsys.readouterr()
    assert main(["train", "--out", str(run), "--resume", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "unreadable training state" in err and len(err.strip().splitlines()) == 1, err


def test_an_image_damaged_after_its_header_checkpoints_before_the_error(tmp_path, capsys):
    from PIL import Image

    data = tmp_path / "pairs"
    data.mkdir()
    rng = np.random.RandomState(0)
    for name in "abcdefgh":
        for kind in ("blur", "sharp"):
            Image.fromarray((rng.rand(48, 48, 3) * 255).astype(np.uint8)).save(data / f"{name}_{kind}.png")
    whole = (data / "h_sharp.png").read_bytes()
    (data / "h_sharp.png").write_bytes(whole[:len(whole) // 2])   # the header reads; the pixels do not
    run = tmp_path / "run"
    with pytest.raises(VdeblurError, match="h_sharp.png: unreadable image"):
        train(_recipe(steps=40, batch=1, data=[str(data)], synthetic=False), run, progress=False,
              workers=0, log_every=1)
    saved = json.loads((run / "latest.json").read_text())["step"]
    assert saved >= 1 and "saved a checkpoint at step" in capsys.readouterr().err


def test_a_photo_that_is_no_picture_is_named_before_the_run(tmp_path):
    from vdeblur.synthetic import PhotoBank

    photos = tmp_path / "photos"
    photos.mkdir()
    for k in range(7):   # every 6th is held out: the bad one must be among the training share
        (photos / f"p{k}.png").write_bytes(b"not a png")
    with pytest.raises(VdeblurError, match="unreadable image"):
        PhotoBank([photos], builtin=False)


@pytest.mark.parametrize("extra, message", [
    (["--crop", "40"], "multiple of 16"),
    (["--data", "/nonexistent/dir"], "no such folder"),
    (["--synthetic-fraction", "2"], "--synthetic-fraction"),
    (["--no-synthetic"], "needs --data"),
    (["--lr", "nan"], "--lr must be a positive number, got nan"),
    (["--lr-power", "-1"], "--lr-power must be a number >= 0, got -1"),
    (["--grad-weight", "inf"], "--grad-weight must be a number >= 0, got inf"),
    (["--threads", "9999"], "--threads must be between 0 (one per core) and this machine's"),
    (["--seed", "-1"], "--seed must be between 0 and 2**63 - 1, got -1"),
    (["--seed", str(2**64)], "--seed must be between 0 and 2**63 - 1"),
    (["--checkpoint-minutes", "-1"], "--checkpoint-minutes must be a positive number of minutes, got -1.0"),
    (["--time-limit", "nan"], "--time-limit must be a positive number of minutes, got nan"),
    (["--log-every", "0"], "--log-every must be at least 1, got 0"),
    (["--no-synthetic", "--synthetic-fraction", "0.5"], "--no-synthetic has none"),
])
def test_cli_bad_options(tmp_path, capsys, extra, message):
    rc = main(["train", "--out", str(tmp_path / "x"), "--widths", "4", "8", "16", "--blocks", "1",
               "--steps", "1", "--batch", "1", "--no-progress", *extra])
    assert rc == 1
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "../escape", "/abs/path"])
def test_a_run_name_is_one_folder_name(tmp_path, capsys, monkeypatch, name):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert main(["train", "--name", name, "--steps", "1"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"vdeblur: error: --name {name!r}: a run name is one folder name under") and "--out" in err
    assert list(tmp_path.iterdir()) == []


def test_resume_of_a_non_run(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path), "--resume"]) == 1
    assert "not a vdeblur training run" in capsys.readouterr().err
    (tmp_path / "clip.mp4").write_bytes(b"")
    assert main(["train", "--out", str(tmp_path / "clip.mp4"), "--steps", "1"]) == 1
    assert capsys.readouterr().err == (f"vdeblur: error: {tmp_path / 'clip.mp4'}: not a folder; --out names the "
                                       f"folder a run keeps its checkpoints in\n")


@pytest.mark.slow
def test_torchrun_ddp_two_processes(tmp_path):
    """Two CPU processes (gloo) through torchrun: gradients are averaged, so both ranks agree."""
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "vdeblur", "train", "--out", str(tmp_path / "ddp"), "--widths", "4", "8", "16", "--blocks", "1",
           "--crop", "32", "--batch", "1", "--steps", "2", "--no-progress", "--device", "cpu"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    # Both ends of stderr: a rank's own error comes first, torchrun's summary last.
    assert proc.returncode == 0, proc.stderr[:3000] + "\n...\n" + proc.stderr[-2000:]
    assert "x2" in proc.stderr
    weights, state = load_run_state(tmp_path / "ddp")
    assert state["step"] == 2


def test_init_weights_starts_from_a_checkpoint(tmp_path, capsys):
    from vdeblur.checkpoint import save_checkpoint
    from vdeblur.network import build_model

    start = build_model(ModelConfig.from_dict(TINY))
    torch.nn.init.constant_(start.module.dg3.out.bias, 0.25)
    ckpt = save_checkpoint(tmp_path / "start.safetensors", start)
    out = tmp_path / "ft"
    assert main(["train", "--out", str(out), "--init-weights", str(ckpt), "--crop", "32", "--batch", "1",
                 "--steps", "1", "--lr", "1e-12", "--no-progress"]) == 0
    tuned = load_checkpoint(out / "step-0000001.safetensors")
    assert tuned.config == start.config
    assert torch.allclose(tuned.module.dg3.out.bias, torch.full((3,), 0.25), atol=1e-6)
    _, state = load_run_state(out)
    assert json.loads(state["recipe"])["init_weights"] == str(ckpt.resolve())
    assert main(["train", "--out", str(tmp_path / "x"), "--init-weights", str(ckpt), "--widths", "4", "8", "16"]) == 1
    assert "--init-weights takes the network shape" in capsys.readouterr().err


def test_named_runs_live_under_xdg_cache_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert main(["train", "--name", "tiny", "--widths", "4", "8", "16", "--blocks", "1", "--crop", "32", "--batch", "1",
                 "--steps", "1", "--no-progress", "--no-builtin-photos", "--threads", "1"]) == 0
    weights, state = load_run_state(tmp_path / "xdg" / "vdeblur" / "runs" / "tiny")
    assert state["step"] == 1 and weights.is_file()


@pytest.mark.slow
def test_compiled_training_follows_eager(tmp_path, monkeypatch):
    """--compile runs the step through torch.compile (cache under XDG_CACHE_HOME) and trains the same
    weights as eager up to rounding."""
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", os.path.abspath(default_cache_dir()))
    recipe = _recipe(steps=3, precision="fp32", builtin_photos=False)
    eager = train(recipe, tmp_path / "eager", progress=False)
    compiled = train(recipe, tmp_path / "compiled", progress=False, compile=True)
    assert type(compiled.net).__name__ == "OptimizedModule" and type(eager.net).__name__ != "OptimizedModule"
    assert any((tmp_path / "xdg" / "vdeblur" / "torchinductor").iterdir())
    for (name, a), b in zip(eager.model.state_dict().items(), compiled.model.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-4), name
    assert any(not torch.equal(a, b) for a, b in zip(_recipe_start(recipe).values(), compiled.model.state_dict().values()))


def _recipe_start(recipe):
    return Trainer(recipe, torch.device("cpu"), "fp32").model.state_dict()


@pytest.mark.parametrize("name", ["SIGTERM", "SIGHUP"])   # SIGHUP (a closed terminal) saved nothing
def test_a_signal_checkpoints_and_exits_128_plus_n(tmp_path, name):
    import signal
    import time

    sig = getattr(signal, name)

    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "vdeblur", "train", "--out", str(out), "--widths", "4", "8", "16",
                             "--blocks", "1", "--crop", "32", "--batch", "1", "--steps", "100000", "--no-progress",
                             "--log-every", "1", "--threads", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 120
    while not (out / "log.jsonl").is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig, err
    assert "Traceback" not in err and "continue with: vdeblur train --resume" in err
    assert json.loads((out / "latest.json").read_text())["step"] >= 1


def test_a_diverging_run_stops_with_one_line_and_saves_nothing_broken(tmp_path, capsys):
    """At lr 1e8 the loss went NaN at step 2 and the run said "finished", saving NaN weights and a
    log with bare NaN (not JSON). It stops at the first step whose gradient is not finite."""
    out = tmp_path / "run"
    code = main(["train", "--out", str(out), "--widths", "4", "8", "16", "--blocks", "1", "--crop", "16",
                 "--batch", "1", "--steps", "6", "--lr", "1e30", "--precision", "fp32", "--log-every", "1",
                 "--no-progress", "--device", "cpu"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and err[-1].startswith("vdeblur: error: the loss or its gradient is not finite at step ")
    assert "no checkpoint was saved" in err[-1] and "--init-weights" in err[-1]
    assert not list(out.glob("step-*.safetensors"))
    for line in (out / "log.jsonl").read_text().splitlines():   # strict JSON, and the lr each step ran at
        rec = json.loads(line, parse_constant=lambda c: pytest.fail(f"{c} in the log"))
        assert rec["lr"] == pytest.approx(poly_lr(rec["step"] - 1, 1e30, 6, 0.3))


def test_resume_with_weights_of_another_network_is_one_line(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--widths", "4", "8", "16", "--blocks", "1", "--crop", "32",
                 "--batch", "1", "--steps", "2", "--time-limit", "0.0001", "--no-progress", "--device", "cpu"]) == 0
    capsys.readouterr()
    from vdeblur.checkpoint import save_checkpoint
    from vdeblur.network import build_model

    other = build_model(ModelConfig(widths=(8, 16, 16), blocks_per_group=1, attention_reduction=4))
    weights, _ = load_run_state(out)
    save_checkpoint(weights, other)
    assert main(["train", "--out", str(out), "--resume", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"vdeblur: error: {weights}: not weights of this run's network (")


def test_a_crop_past_any_use_and_a_negative_saved_step_are_one_line(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path / "big"), "--crop", "100000", "--steps", "1"]) == 1
    assert capsys.readouterr().err == "vdeblur: error: --crop must be at most 2048, got 100000\n"
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--widths", "4", "8", "16", "--blocks", "1", "--crop", "32",
                 "--batch", "1", "--steps", "1", "--no-progress", "--device", "cpu"]) == 0
    capsys.readouterr()
    state_path = next(out.glob("step-*.state.pt"))
    state = torch.load(state_path, weights_only=False)
    state["step"] = -5
    torch.save(state, state_path)
    assert main(["train", "--out", str(out), "--resume", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "damaged training state" in err and "negative step" in err


def test_resume_needs_no_init_weights_file_and_keeps_one_log_line_per_step(tmp_path, capsys):
    """A run started from --init-weights resumes after that file is gone (the checkpoint replaces
    it), and the log lines of steps trained past the last checkpoint (a kill -9) are not repeated."""
    from vdeblur.checkpoint import save_checkpoint
    from vdeblur.network import build_model

    start = save_checkpoint(tmp_path / "start.safetensors", build_model(ModelConfig.from_dict(TINY)))
    run = tmp_path / "ft"
    assert main(["train", "--out", str(run), "--init-weights", str(start), "--crop", "32", "--batch", "1",
                 "--steps", "4", "--no-progress", "--log-every", "1", "--no-builtin-photos"]) == 0
    state = torch.load(run / "step-0000004.state.pt", weights_only=True)
    # What a kill -9 after step 2 leaves: the checkpoint of step 2, log lines up to 4, a torn last line.
    train(Recipe(**json.loads(state["recipe"])), tmp_path / "two", progress=False, stop_at_step=2)
    for name in ("latest.json", "step-0000002.safetensors", "step-0000002.state.pt"):
        (run / name).write_bytes((tmp_path / "two" / name).read_bytes())
    for name in ("step-0000004.safetensors", "step-0000004.state.pt"):
        (run / name).unlink()
    with open(run / "log.jsonl", "a") as f:
        f.write('{"step": 5, "lo')
    start.unlink()
    capsys.readouterr()
    assert main(["train", "--out", str(run), "--resume", "--no-progress", "--log-every", "1"]) == 0
    steps = [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]


def test_checkpoints_record_how_the_steps_ran(tmp_path):
    run = tmp_path / "run"
    train(_recipe(steps=1), run, progress=False)
    from vdeblur.checkpoint import read_checkpoint

    env = read_checkpoint(run / "step-0000001.safetensors").extra["environment"]
    assert env["device"] == "cpu" and env["threads"] == torch.get_num_threads() and env["world_size"] == 1
    assert env["precision"] in ("fp32", "bf16") and env["torch"] == torch.__version__ and env["torch_compile"] is False


def test_resume_with_another_process_count_says_what_changes(tmp_path, capsys):
    run = tmp_path / "run"
    train(_recipe(steps=2), run, progress=False, stop_at_step=1)
    state_path = run / "step-0000001.state.pt"
    state = torch.load(state_path, weights_only=True)
    state["world_size"] = 4
    torch.save(state, state_path)
    capsys.readouterr()
    train(_recipe(steps=2), run, resume=True, progress=False)
    assert "trained with 4 process(es) and goes on with 1: each step now takes 2 samples instead of 8" in capsys.readouterr().err


def test_synthetic_fraction_without_real_pairs_is_refused(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path / "x"), "--synthetic-fraction", "0.5", "--steps", "1"]) == 1
    err = capsys.readouterr().err
    assert "without --data every sample is synthetic" in err and len(err.strip().splitlines()) == 1


def test_a_resumed_run_logs_as_often_as_it_began(tmp_path):
    run = tmp_path / "run"
    train(_recipe(steps=4, batch=1), run, progress=False, log_every=2, stop_at_step=2)
    assert main(["train", "--out", str(run), "--resume", "--no-progress"]) == 0
    steps = [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()]
    assert steps == [2, 4]
