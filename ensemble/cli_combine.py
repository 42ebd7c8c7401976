"""Verbs of the combine stage, each a step of ``ensemble.combine``'s path: a member's fold average, the blend
of the members, post-processing, the submission, and scoring or validating a submission."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from ensemble.atomic import write_csv, write_json
from ensemble.config import POOLINGS, POSTPROCESS_METHODS, POSTPROCESS_SCOPES
from ensemble.layout import read_table

log = logging.getLogger("ensemble")
VERBS = ["average", "blend", "postprocess", "submit", "validate", "score"]
# Tables that later steps read are written in full (repr round-trips a float64): the blend and the submission
# are the same to the last bit as if every step ran in one process.


def add_average(sub) -> None:
    p = sub.add_parser("average", help="one member's folds averaged, raw and each fold tempered; OOF scores")
    p.add_argument("--member", required=True)
    p.add_argument("--pooling", choices=POOLINGS, required=True, help="how the folds' test tables combine")
    p.add_argument("--oof", type=Path, nargs="+", required=True, help="out-of-fold tables, by fold")
    p.add_argument("--test", type=Path, nargs="+", required=True, help="test tables, by fold")
    p.add_argument("--fold-scores", type=Path, nargs="+", required=True, help="each fold's predict scores")
    p.add_argument("--refit-test", type=Path, help="a full-data refit's test table: one more test part")
    p.add_argument("--out-oof", type=Path, required=True)
    p.add_argument("--out-test", type=Path, required=True)
    p.add_argument("--out-tempered-oof", type=Path, required=True)
    p.add_argument("--out-tempered-test", type=Path, required=True)
    p.add_argument("--out-temperatures", type=Path, required=True)
    p.add_argument("--out-scores", type=Path, required=True)


def run_average(a) -> None:
    from ensemble.combine import MemberFolds, average_member, fold_temperatures
    from ensemble.scoring import member_scores

    member = MemberFolds(a.member, [read_table(p) for p in a.oof], [read_table(p) for p in a.test],
                         read_table(a.refit_test) if a.refit_test else None)
    oof, test = average_member(member, pooling=a.pooling)
    temperatures = fold_temperatures(member)
    tempered_oof, tempered_test = average_member(member, temperatures, pooling=a.pooling)
    scores = member_scores(oof, [json.loads(p.read_text()) for p in a.fold_scores], a.refit_test is not None)
    for table, path in ((oof, a.out_oof), (test, a.out_test), (tempered_oof, a.out_tempered_oof),
                        (tempered_test, a.out_tempered_test)):
        write_csv(table, path)
    write_json({"temperatures": temperatures}, a.out_temperatures)
    write_json(scores, a.out_scores)
    log.info("%s: out-of-fold log loss %.4f (folds %.4f +- %.4f), accuracy %.3f", a.member,
             scores["overall"]["log_loss"],
             scores["fold_log_loss_mean"], scores["fold_log_loss_std"], scores["overall"]["accuracy"])


def add_blend(sub) -> None:
    p = sub.add_parser("blend", help="blend the members' averages (equal or fitted weights), raw and tempered")
    p.add_argument("--weights", choices=["equal", "fitted"], default="equal")
    p.add_argument("--pooling", choices=POOLINGS, required=True, help="how the members' tables combine")
    p.add_argument("--members", nargs="+", required=True, help="member names; every list below is in this order")
    p.add_argument("--groups", nargs="+", required=True, help="the model each member belongs to")
    p.add_argument("--oof", type=Path, nargs="+", required=True)
    p.add_argument("--test", type=Path, nargs="+", required=True)
    p.add_argument("--tempered-oof", type=Path, nargs="+", required=True)
    p.add_argument("--tempered-test", type=Path, nargs="+", required=True)
    p.add_argument("--out-oof", type=Path, required=True)
    p.add_argument("--out-test", type=Path, required=True)
    p.add_argument("--out-tempered-oof", type=Path, required=True)
    p.add_argument("--out-tempered-test", type=Path, required=True)
    p.add_argument("--out-scores", type=Path, required=True)


def run_blend(a) -> None:
    from ensemble.combine import blend_oof, blend_test, equal_weights, fit_blend_weights
    from ensemble.scoring import blend_scores

    lists = (a.groups, a.oof, a.test, a.tempered_oof, a.tempered_test)
    if any(len(x) != len(a.members) for x in lists):
        raise ValueError("--groups, --oof, --test, --tempered-oof and --tempered-test need one entry per member")
    oofs = [read_table(p) for p in a.oof]
    pooling = a.pooling
    weights = fit_blend_weights(oofs, pooling=pooling) if a.weights == "fitted" else equal_weights(len(oofs))
    oof = blend_oof(oofs, weights, pooling=pooling)
    write_csv(oof, a.out_oof)
    write_csv(blend_test([read_table(p) for p in a.test], weights, pooling=pooling), a.out_test)
    write_csv(blend_oof([read_table(p) for p in a.tempered_oof], weights, pooling=pooling), a.out_tempered_oof)
    write_csv(blend_test([read_table(p) for p in a.tempered_test], weights, pooling=pooling), a.out_tempered_test)
    scores = blend_scores(a.members, a.groups, oofs, oof, weights, a.weights, pooling)
    write_json(scores, a.out_scores)
    log.info("blend of %d member(s): out-of-fold log loss %.4f", len(oofs), scores["overall"]["log_loss"])


def add_postprocess(sub) -> None:
    p = sub.add_parser("postprocess", help="temperature / clipping fitted on out-of-fold predictions only")
    p.add_argument("--blend-oof", type=Path, required=True)
    p.add_argument("--blend-test", type=Path, required=True)
    p.add_argument("--blend-tempered-oof", type=Path, required=True)
    p.add_argument("--blend-tempered-test", type=Path, required=True)
    p.add_argument("--blend-scores", type=Path, required=True, help="the blend's scores.json (its weights)")
    p.add_argument("--temperatures", nargs=2, action="append", required=True, metavar=("MEMBER", "FILE"),
                   help="a member's fold temperatures (python -m ensemble average), once per member")
    p.add_argument("--method", choices=POSTPROCESS_METHODS, required=True)
    p.add_argument("--scope", choices=POSTPROCESS_SCOPES, required=True)
    p.add_argument("--answers", type=Path, help="optional answer key: adds test log loss to the table")
    p.add_argument("--out-oof", type=Path, required=True)
    p.add_argument("--out-test", type=Path, required=True)
    p.add_argument("--out-params", type=Path, required=True)
    p.add_argument("--out-table", type=Path, required=True)


def run_postprocess(a) -> None:
    from ensemble.finalize import finalize
    from ensemble.layout import read_labels

    temperatures = {member: json.loads(Path(path).read_text())["temperatures"] for member, path in a.temperatures}
    blend = json.loads(a.blend_scores.read_text())
    oof, test, params, table = finalize(
        (read_table(a.blend_oof), read_table(a.blend_test)),
        (read_table(a.blend_tempered_oof), read_table(a.blend_tempered_test)), temperatures,
        dict(zip(blend["members"], blend["weights"], strict=True)), method=a.method, scope=a.scope,
        answers=read_labels(a.answers) if a.answers else None)
    write_csv(oof, a.out_oof, float_format="%.8g")
    write_csv(test, a.out_test, float_format="%.8g")
    write_json(params, a.out_params)
    write_csv(table, a.out_table, float_format="%.6g")
    log.info("post-processing table:\n%s", table.to_string(index=False))


def add_submit(sub) -> None:
    p = sub.add_parser("submit", help="clip, renormalise and write a validated submission")
    p.add_argument("--probs", type=Path, required=True)
    p.add_argument("--sample", type=Path, required=True)
    p.add_argument("--floor", type=float, required=True)
    p.add_argument("--ceiling", type=float, required=True)
    p.add_argument("--out", type=Path, required=True)


def run_submit(a) -> None:
    from ensemble.submission import clip_rows, make_submission, validate_submission
    from ensemble.tables import class_columns

    probs, sample = read_table(a.probs), read_table(a.sample)
    sub = make_submission(probs, sample)
    classes = class_columns(sub)
    sub[classes] = clip_rows(sub[classes].to_numpy(), a.floor, a.ceiling)
    validate_submission(sub, sample)
    write_csv(sub, a.out, float_format="%.10g")


def add_score(sub) -> None:
    p = sub.add_parser("score", help="Kaggle log loss of a submission against an answer key (id,breed)")
    p.add_argument("submission", type=Path)
    p.add_argument("answers", type=Path)
    p.add_argument("--members", type=Path, nargs="*", default=[],
                   help="also score these probability tables (e.g. each fold's test predictions)")
    p.add_argument("--out", type=Path, help="write the scores as JSON here")


def run_score(a) -> None:
    from ensemble.layout import read_labels
    from ensemble.scoring import score_table

    answers = read_labels(a.answers)
    scores = {"submission": score_table(read_table(a.submission), answers),
              "members": {str(p): score_table(read_table(p), answers) for p in a.members}}
    if a.out:
        write_json(scores, a.out)
    print(f"log loss {scores['submission']['log_loss']:.5f}  accuracy {scores['submission']['accuracy']:.4f}")
    for path, s in scores["members"].items():
        print(f"  {path}: log loss {s['log_loss']:.5f}  accuracy {s['accuracy']:.4f}")


def add_validate(sub) -> None:
    p = sub.add_parser("validate", help="check a submission file against sample_submission.csv")
    p.add_argument("submission", type=Path)
    p.add_argument("sample", type=Path)


def run_validate(a) -> None:
    from ensemble.submission import validate_submission

    validate_submission(read_table(a.submission), read_table(a.sample))
    log.info("%s is a valid submission", a.submission)
