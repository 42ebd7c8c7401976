import numpy as np
import pandas as pd
import pytest

from ensemble.ablation import STEPS, TRAINED, describe, variants
from ensemble.ablation_table import ablation_table, cross_fitted_clip, markdown
from ensemble.metrics import kaggle_log_loss
from ensemble.postprocess import clip_renormalise, fit_clip

BASE = {"backbone": "resnet18", "weights": "w.pt", "image_size": 112, "head_epochs": 0, "epochs": 8, "lr": 0.001,
        "batch_size": 32, "lr_groups": 1, "lr_ratio": 1.0, "finetune_lr_scale": 1.0, "cycle_epochs": None,
        "cycle_mult": 1.0, "cycle_decay": 1.0, "snapshots": False, "augment": "light", "mixup": 0.2, "cutmix": 0.0,
        "label_smoothing": 0.1, "keep": "best", "patience": 2, "seed": 0}
TWO = {"head_epochs": 2, "freeze_stages": 2, "lr_groups": 3, "lr_ratio": 0.3, "finetune_lr_scale": 0.4}
SGDR = {"cycle_epochs": 2, "snapshots": True}
STEPS_ = {"augment": {"augment": "standard"}, "baseline": {"optimizer": "sgd", "lr": 0.05, "weight_decay": 5e-4},
          "optimizer": {"optimizer": "adamw", "lr": 1e-3, "weight_decay": 0.05}, "layer_decay": 0.7, "ema": 0.99}


def test_each_row_adds_one_step_and_keeps_the_whole_network_epochs():
    rows = {k.removeprefix("ablation-"): v for k, v in variants(BASE, two_phase=TWO, sgdr=SGDR, **STEPS_).items()}
    assert list(rows) == list(TRAINED)
    base = rows["baseline"]
    assert base["head_epochs"] == 0 and base["epochs"] == 8 and base["augment"] == "none"
    assert base["mixup"] == 0 and base["label_smoothing"] == 0 and base["lr_groups"] == 1
    assert base["freeze_stages"] == 0  # every stage trains until the two-phase step
    assert base["keep"] == "last" and base["patience"] == 0  # every row scored the same way
    assert base["weights"] == "w.pt" and base["image_size"] == 112  # from the model
    assert base["lr"] == 0.05 and base["optimizer"] == "sgd"  # from ablation.baseline, not the model
    assert all(row["epochs"] == 8 for row in rows.values())  # the head epochs come on top, on the frozen backbone
    assert {k for k in rows["two_phase"] if rows["two_phase"][k] != base[k]} == set(TWO)
    assert {k for k in rows["sgdr"] if rows["sgdr"][k] != rows["two_phase"][k]} == set(SGDR)
    assert {k for k in rows["augment"] if rows["augment"][k] != rows["sgdr"][k]} == {"augment"}
    assert {k for k in rows["optimizer"] if rows["optimizer"][k] != rows["augment"][k]} == {"optimizer", "lr",
                                                                                            "weight_decay"}
    assert base["optimizer"] == "sgd" and rows["optimizer"]["lr"] == 1e-3
    assert {k for k in rows["layer_decay"] if rows["layer_decay"][k] != rows["optimizer"][k]} == {
        "layer_decay", "lr_groups", "lr_ratio"}  # layer decay replaces the depth groups
    assert {k for k in rows["ema"] if rows["ema"][k] != rows["layer_decay"][k]} == {"ema"}
    described = describe(variants(BASE, two_phase=TWO, sgdr=SGDR, **STEPS_), ["original", "hflip"])
    assert "2 head epochs" in described["two_phase"] and "adamw lr 0.001" in described["optimizer"]
    assert "first 2 stages kept frozen" in described["two_phase"]


@pytest.mark.parametrize("two,sgdr,message", [
    ({**TWO, "head_epochs": 0}, SGDR, "head_epochs must be at least 1"),
    ({k: v for k, v in TWO.items() if k != "head_epochs"}, SGDR, "head_epochs must be at least 1"),
    ({**TWO, "epochs": 3}, SGDR, "ablation.two_phase: unknown key(s) ['epochs']"),
    (TWO, {"augment": "heavy"}, "ablation.sgdr: unknown key(s) ['augment']"),
])
def test_unusable_steps_are_refused_with_the_key(two, sgdr, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        variants(BASE, two_phase=two, sgdr=sgdr, **STEPS_)


def _oofs(k=3, n=300, classes=("a", "b", "c"), seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for f in range(k):
        probs = rng.dirichlet(np.ones(len(classes)) * 0.2, size=n)  # over-confident: a floor helps
        labels = rng.integers(0, len(classes), size=n)
        t = pd.DataFrame(probs, columns=list(classes))
        t.insert(0, "id", [f"{f}-{j}" for j in range(n)])
        t.insert(1, "breed", [classes[i] for i in labels])
        t.insert(2, "fold", f)
        out.append(t)
    return out


def test_clip_bounds_of_a_fold_come_from_the_other_folds_only():
    oofs = _oofs()
    losses, bounds = cross_fitted_clip(oofs)
    for i in range(3):
        rest = pd.concat([o for j, o in enumerate(oofs) if j != i])
        labels = rest["breed"].map({"a": 0, "b": 1, "c": 2}).to_numpy()
        assert bounds[i] == fit_clip(rest[["a", "b", "c"]].to_numpy(), labels)
        own = oofs[i]["breed"].map({"a": 0, "b": 1, "c": 2}).to_numpy()
        assert losses[i] == pytest.approx(kaggle_log_loss(clip_renormalise(oofs[i][["a", "b", "c"]].to_numpy(),
                                                                           *bounds[i]), own))
    assert np.mean(losses) < np.mean([kaggle_log_loss(o[["a", "b", "c"]].to_numpy(),
                                                      o["breed"].map({"a": 0, "b": 1, "c": 2}).to_numpy())
                                      for o in oofs])  # random over-confident predictions: a floor helps


def test_table_reads_each_row_from_its_own_scores_and_times():
    oofs = _oofs()
    tta = [kaggle_log_loss(o[["a", "b", "c"]].to_numpy(), o["breed"].map({"a": 0, "b": 1, "c": 2}).to_numpy())
           for o in oofs]
    scores = {step: [{"log_loss_no_tta": 2.0 - i * 0.1 - f * 0.01, "log_loss": 2.0 - i * 0.1 - f * 0.01,
                      "seconds_by_view": {"original": 1.0}} for f in range(3)] for i, step in enumerate(TRAINED)}
    scores["ema"] = [{**s, "log_loss": t, "seconds_by_view": {"original": 1.0, "hflip": 2.0}}
                     for s, t in zip(scores["ema"], tta)]
    seconds = {step: [10.0, 11.0, 12.0] for step in TRAINED}
    table = ablation_table(scores, seconds, oofs, {s: s for s in STEPS}).set_index("step")
    assert list(table.index) == list(STEPS)
    assert table.loc["baseline", "oof_log_loss_mean"] == pytest.approx(1.99)
    assert table.loc["baseline", "oof_log_loss_std"] == pytest.approx(np.std([2.0, 1.99, 1.98]))
    assert table.loc["two_phase", "gain_vs_previous"] == pytest.approx(0.1)
    assert table.loc["ema", "wall_seconds"] == 33 + 3  # training jobs + the original view
    assert table.loc["tta", "wall_seconds"] == 33 + 9  # + the hflip view
    assert table.loc["tta", "oof_log_loss_mean"] == pytest.approx(np.mean(tta))
    assert table.loc["clip", "oof_log_loss_mean"] == pytest.approx(np.mean(cross_fitted_clip(oofs)[0]))
    assert "| tta | tta |" in markdown(table.reset_index())
    scores["ema"][0]["log_loss"] += 0.5
    with pytest.raises(ValueError, match="do not match its scores"):
        ablation_table(scores, seconds, oofs, {s: s for s in STEPS})
