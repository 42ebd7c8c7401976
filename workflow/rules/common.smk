# Helpers shared by the rules: run paths, the data's stamps, per-member training flags, resources.
import functools
import json
import os
import posixpath
import shlex
import sys

from ensemble import ablation, fingerprint
from ensemble import config as cfg
from ensemble.backbones import get_backbone
from ensemble.cache import FORMAT as CACHE_FORMAT
from ensemble.layout import read_header
from ensemble.members import trained_parts

RUN = config["run"]
RESULTS = f"results/{RUN}"
LOGS = f"logs/{RUN}"
DATA = config["data"]["dir"]
DEMO = "data/demo"  # where the demo_data rule writes the built-in data set
# Files move through a storage provider (the Kubernetes profile): pods see only what rules declare.
REMOTE = bool(workflow.storage_settings.default_storage_provider)
STAMPS = {split: f"{RESULTS}/inputs/{split}.json" for split in fingerprint.SPLITS}  # the data's content
HASH_STORE = str(fingerprint.default_store("results"))
CONDA_ENV = "../../envs/ensemble.yaml"
FOLDS = list(range(config["folds"]["k"]))
# the members, once every setting that spans keys is checked (ensemble/config.py), before any job runs
MEMBERS = {m.name: m for m in cfg.check_models(config["models"], config["seed"])}
MEMBER_NAMES = list(MEMBERS)  # the {member} wildcard: one per (model, seed)


wildcard_constraints:
    member="[A-Za-z0-9._-]+",
    fold=r"\d+",
    side=r"\d+",
    interpolation="bilinear|bicubic",
    split="train|test",


def refresh_stamps():
    """A stamp whose split's images or table changed since it was written is rewritten now, before the DAG is
    built, so Snakemake sees it as an updated input of exactly the rules that read that split (cheap: files
    are re-hashed only when their size or mtime changed)."""
    if REMOTE or not workflow.is_main_process:
        return
    for split in fingerprint.refresh_stamps(DATA, STAMPS, HASH_STORE, made_by_rule=DATA == DEMO):
        print(f"ensemble: the {split} data in {DATA} changed since {STAMPS[split]} was written: the rules "
              "that read it rerun", file=sys.stderr)


refresh_stamps()


def data_files(*names):
    """The data files and image folders a rule reads, as named inputs, where a storage provider must ship
    them to the job; locally none: the split stamps stand for them and data_dir gives the folder, so a copied
    or moved folder with the same content reruns nothing."""
    if not REMOTE:
        return {}
    paths = {"labels": f"{DATA}/labels.csv", "sample": f"{DATA}/sample_submission.csv",
             "train_images": f"{DATA}/train", "test_images": f"{DATA}/test"}
    return {name: paths[name] for name in names}


def fingerprint_inputs():
    """What the stamps are made from, as inputs: every data file where they must be shipped, the demo's
    tables where the demo_data job makes them (so the stamps come after), else none: the stamps are
    refreshed from the data's content when the workflow loads, never from file times or the folder's path."""
    if REMOTE:
        return data_files("labels", "sample", "train_images", "test_images")
    if DATA == DEMO:
        return {"labels": f"{DEMO}/labels.csv", "sample": f"{DEMO}/sample_submission.csv"}
    return {}


def uncached(*folders):
    """Image folders a torch job reads itself when there is no decode-once cache (else none)."""
    return () if config["train"]["cache"] else folders


def demo_folders():
    """The demo's image folders as outputs, where a storage provider must upload them."""
    return {"train_images": directory(f"{DEMO}/train"), "test_images": directory(f"{DEMO}/test")} if REMOTE else {}


def split_stamp(wildcards):
    """Input function: the stamp of the split in the job's wildcards."""
    return STAMPS[wildcards.split]


def answers_file():
    """data.answers, where `auto` is the key beside the data (test_labels.csv) when there is one: the demo's,
    or one in a user's folder."""
    answers = config["data"]["answers"]
    if answers != "auto":
        return answers
    key = f"{DATA}/test_labels.csv"
    return key if DATA == DEMO or os.path.exists(key) else None


ANSWERS = answers_file()


ABLATION = [ablation.PREFIX + step for step in ablation.TRAINED]  # members of `snakemake ablation` only


def ablation_variants():
    """{member: settings} of the ablation's trained rows (built when first asked for)."""
    return cfg.ablation_variants(config["models"], config["seed"], config["ablation"])


def model_config(name):
    """A member's settings: its model's, with the defaults filled in and the member's seed."""
    if name in ABLATION:
        return ablation_variants()[name]
    member = MEMBERS[name]
    return cfg.member_settings(config["models"][member.model], member.seed)


def refits(name):
    """Whether a member's model also trains a full-data refit."""
    return name in MEMBERS and config["models"][MEMBERS[name].model].get("refit", False)


REFITS = [m for m in MEMBER_NAMES if refits(m)]


def member_groups():
    """The model each member belongs to, in MEMBER_NAMES order (the blend reports the gain of seed averaging)."""
    return [MEMBERS[name].model for name in MEMBER_NAMES]


def n_classes():
    """K from the sample submission's header, when the file is there yet (the demo's is made by a job)."""
    sample = f"{DATA}/sample_submission.csv"
    return len(read_header(sample)) - 1 if os.path.exists(sample) else None


cfg.check_clip(config["clip"]["floor"], config["clip"]["ceiling"], n_classes())


def unflagged(path):
    """rules.x.output.y as a plain pattern for expand(). Under a default storage provider (the Kubernetes
    profile) it carries a storage flag that expand() refuses (snakemake/snakemake#3027); the plain path gets
    the provider again where it is used as an input."""
    stored = getattr(path, "flags", {}).get("storage_object")
    if stored is None:
        return path
    prefix = workflow.storage_settings.default_storage_prefix or ""
    return stored.query.removeprefix(prefix).lstrip(posixpath.sep)


FEATURE_KEYS = ("backbone", "weights", "image_size", "augment", "precision", "seed", "batch_size")


def train_flags(wildcards):
    """The model's hyperparameters as shell-quoted `python -m ensemble train` flags (a param: edits rerun)."""
    return _flags(wildcards.member, None)


def _flags(name, keys):
    settings = model_config(name)
    flags = []
    for key, value in settings.items():
        if keys is not None and key not in keys:
            continue
        if value is None or value == "auto" and key == "lr":  # library default / the LR finder's rate
            continue
        values = value if isinstance(value, list) else [value]
        flags += [f"--{key.replace('_', '-')}", *(shlex.quote(str(v)) for v in values)]
    return " ".join(flags)


def weights_digest(wildcards):
    """The SHA-256 of a member's local weights file, or nothing for `none` and `imagenet`: a param, so new
    bytes under the same path retrain what starts from them."""
    weights = model_config(wildcards.member)["weights"]
    return "" if weights in ("none", "imagenet") else _file_digest(weights)


@functools.cache
def _file_digest(path):
    return fingerprint.file_digest(path, HASH_STORE)


def lr_finder_result(wildcards):
    """Input function: the LR finder's suggestion for a model whose lr is `auto`, else nothing."""
    if model_config(wildcards.member)["lr"] != "auto":
        return []
    return expand(unflagged(rules.lr_find.output.suggestion), member=wildcards.member)


def lr_from_flag(wildcards, input):
    """`--lr-from FILE` when the rate comes from the LR finder."""
    return f"--lr-from {shlex.quote(input.lr[0])}" if input.lr else ""


def lr_find_outputs():
    """The LR finder's plots of the models with `lr: auto` (others: run its target by hand)."""
    auto = [m for m in MEMBER_NAMES if model_config(m)["lr"] == "auto"]
    return expand(unflagged(rules.lr_find.output.plot), member=auto)


def data_dir(wildcards, input):
    """The data folder: where a storage provider put a rule's declared data files, else data.dir. Derived from
    the input, so Snakemake never reruns for the path itself: a copied folder (same stamps) reruns nothing."""
    for name in ("labels", "sample"):
        if name in input.keys():
            return os.path.dirname(input[name])
    return DATA


def labels_csv(wildcards, input):
    return os.path.join(data_dir(wildcards, input), "labels.csv")


def sample_csv(wildcards, input):
    return os.path.join(data_dir(wildcards, input), "sample_submission.csv")


def output_dir(wildcards, output):
    """The folder of a rule's first output."""
    return os.path.dirname(output[0])


def fold_threads(wildcards):
    """Threads of one fold's job (train, predict and their refits): locally, the cores shared among the
    training jobs of the run or of the ablation (ensemble.config.fold_threads); on a cluster, 4, a job's own
    allocation."""
    if not (workflow.is_main_process and workflow.local_exec):
        return 4  # submitted by a cluster executor, or run on the node it was given (which re-evaluates this)
    jobs = ABLATION_JOBS if wildcards.member in ABLATION else TRAINING_JOBS
    fold = wildcards.get("fold")
    job = (wildcards.member, "full" if fold is None else f"fold{fold}")
    return cfg.fold_threads(workflow.cores, len(jobs), jobs.index(job))


TRAINING_JOBS = [(m.name, part) for m, parts in trained_parts(config) for part in parts]  # the run's, in order
ABLATION_JOBS = [(m, f"fold{f}") for m in ABLATION for f in FOLDS]  # `snakemake ablation`'s (no refits)


def speed_flags(wildcards, input):
    """Flags of settings that change speed, never results: loader workers and deterministic kernels. A
    params function of `input`, which Snakemake counts as derived from the inputs and never records, so
    editing them reruns nothing (a plain param would retrain every fold)."""
    return f"--workers {config['train']['workers']} --deterministic {config['train']['deterministic']}"


def train_speed_flags(wildcards, input):
    """speed_flags, and torch.compile for the training jobs (speed only, as speed_flags)."""
    return f"{speed_flags(wildcards, input)} --compile {str(config['train']['compile']).lower()}"


def predict_batch_size(wildcards, input):
    """The prediction batch size (speed only, as speed_flags)."""
    return config["predict"]["batch_size"]


def gpus_per_job():
    """1 unless training is pinned to the CPU; from config, never from the machine that builds the DAG."""
    return 0 if config["train"]["device"] == "cpu" else 1


def fold_predictions(kind):
    """Input function: one model's per-fold prediction tables of `kind` (oof, test or scores)."""

    def tables(wildcards):
        return expand(unflagged(getattr(rules.predict.output, kind)), member=wildcards.member, fold=FOLDS)

    return tables


def member_flags(flag, name, members, folds=None):
    """Params function: the rule's input list `name`, made by expand() over `members` (and `folds`), handed to
    the verb as one `flag MEMBER PATH...` per member (or per ablation step, in the same order), so the verb
    reads member -> paths and never slices a flat list. expand() lists the product member by member, in the
    order given (itertools.product). A function of `input`: the paths a storage provider gives the job."""

    def flags(wildcards, input):
        paths = list(input[name])
        per = len(folds) if folds is not None else 1
        if len(paths) != per * len(members):
            raise ValueError(f"{name}: {len(paths)} paths for {len(members)} members x {per}")
        return " ".join(f"{flag} {shlex.quote(m)} " + " ".join(shlex.quote(p) for p in paths[i * per:(i + 1) * per])
                        for i, m in enumerate(members))

    return flags


def refit_test(wildcards):
    """Input function: the test table of the model's full-data refit, when it has one."""
    if not refits(wildcards.member):
        return []
    return expand(unflagged(rules.predict_refit.output.test), member=wildcards.member)


def refit_flag(wildcards, input):
    """`--refit-test FILE` when the model has a full-data refit."""
    return f"--refit-test {shlex.quote(input.refit[0])}" if input.refit else ""


def cache_of(name):
    """(side px, interpolation) of the decoded images a member trains on: the eval resize of its image_size
    (else its backbone's) at its backbone's crop ratio, with the resize its weights expect."""
    from ensemble.cache import cache_side

    pre = get_backbone(model_config(name)["backbone"]).preprocessing()
    return cache_side(model_config(name)["image_size"] or pre.input_size, pre.crop_pct), pre.interpolation


def cache_input(*splits):
    """Input function: the decode-once cache of the member's size for `splits`, unless `train.cache` is off."""

    def arrays(wildcards):
        if not config["train"]["cache"]:
            return []
        side, interpolation = cache_of(wildcards.member)
        return expand(unflagged(rules.cache.output.array), side=side, interpolation=interpolation, split=splits)

    return arrays


def cache_flag(wildcards, input):
    """`--cache DIR` when the job reads the decode-once cache."""
    return f"--cache {shlex.quote(os.path.dirname(input.cache[0]))}" if input.cache else ""


def feature_settings(wildcards):
    """The settings the cached features depend on, as flags: editing anything else leaves them valid."""
    return _flags(wildcards.member, FEATURE_KEYS)


def features_input(wildcards):
    """Input function: the member's cached features, when its head phase uses them."""
    if not cfg.uses_features(model_config(wildcards.member), config["train"]["features"]):
        return []
    return expand(unflagged(rules.features.output.features), member=wildcards.member)


def feature_views(wildcards):
    """Augmented views to cache (ensemble.config.feature_views)."""
    return cfg.feature_views(config["train"]["feature_views"], model_config(wildcards.member)["head_epochs"])


def features_flag(wildcards, input):
    """`--features FILE` when the member's head phase trains on cached features."""
    return f"--features {shlex.quote(input.features[0])}" if input.features else ""


def predict_tta(wildcards):
    """The TTA views a member predicts with (ensemble.config.tta_views)."""
    return cfg.tta_views(wildcards.member, config["predict"]["tta"], ABLATION, config["ablation"]["tta"])


def ablation_changes():
    """What each ablation step changes, in words, as JSON."""
    return json.dumps(ablation.describe(ablation_variants(), config["ablation"]["tta"]))


def answers_flag(wildcards, input):
    """`--answers FILE` when an answer key is configured."""
    return f"--answers {shlex.quote(str(input.answers))}" if input.answers else ""


def answer_scores():
    return [f"{RESULTS}/score/scores.json"] if ANSWERS else []


MLFLOW = cfg.mlflow_settings(config["tracking"]["mlflow"])  # None: no tracking


def untrack():
    """With tracking.mlflow unset, the tracking file of an earlier tracked run goes, or its jobs would go on
    logging to that run's MLflow parent (they find the file by their paths)."""
    tracking = f"{RESULTS}/tracking/mlflow.json"
    if not MLFLOW and not REMOTE and workflow.is_main_process and os.path.exists(tracking):
        os.remove(tracking)
        print(f"ensemble: tracking.mlflow is not set: removed {tracking}, so no job logs to MLflow",
              file=sys.stderr)


untrack()


def mlflow_uri_flag():
    return f"--uri {shlex.quote(MLFLOW['uri'])}" if MLFLOW and MLFLOW.get("uri") else ""


def tracking_outputs():
    """The last tracking step, for `all`, when tracking.mlflow is set."""
    return [f"{RESULTS}/tracking/logged.json"] if MLFLOW else []


def test_scores_flag(wildcards, input):
    """`--test-scores FILE` when the run has an answer key."""
    return f"--test-scores {shlex.quote(input.scores[0])}" if input.scores else ""


def provenance_outputs():
    return [f"{RESULTS}/provenance/config.yaml", f"{RESULTS}/provenance/versions.json"]


def config_json():
    return json.dumps(config, sort_keys=True)
