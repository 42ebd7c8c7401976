# Helpers shared by the rules: run paths, the data's stamps, per-model training flags, resources.
import json
import os
import posixpath
import shlex
import sys

import yaml

from ensemble import ablation, fingerprint
from ensemble.backbones import get_backbone
from ensemble.cache import FORMAT as CACHE_FORMAT
from ensemble.members import members

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
MEMBERS = {m.name: m for m in members(config["models"], config["seed"])}
MODELS = list(MEMBERS)  # the {model} wildcard: one per (model, seed)

with open(workflow.source_path("../schemas/config.schema.yaml")) as _f:
    _MODEL_SCHEMA = yaml.safe_load(_f)["$defs"]["model"]["properties"]
MODEL_DEFAULTS = {key: spec["default"] for key, spec in _MODEL_SCHEMA.items() if "default" in spec}


wildcard_constraints:
    model="[A-Za-z0-9._-]+",
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
    for split in fingerprint.refresh_stamps(DATA, STAMPS, HASH_STORE):
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
if set(ABLATION) & set(MODELS):
    raise ValueError(f"model names {sorted(set(ABLATION) & set(MODELS))} are reserved for the ablation; rename them")


def ablation_variants():
    """{member: settings} of the ablation's trained rows, built from `ablation.model` when first asked for (a
    config the ablation cannot use fails only when the ablation is run)."""
    name = config["ablation"]["model"] or next(iter(config["models"]))
    if name not in config["models"]:
        raise ValueError(f"ablation.model: {name!r} is not one of models: {', '.join(config['models'])}")
    base = {**MODEL_DEFAULTS, **config["models"][name], "seed": config["seed"]}
    for key in ("seeds", "refit"):
        base.pop(key, None)
    settings = config["ablation"]
    return ablation.variants(base, two_phase=settings["two_phase"], sgdr=settings["sgdr"],
                             augment=settings["augment"], baseline=settings["baseline"],
                             optimizer=settings["optimizer"], layer_decay=settings["layer_decay"],
                             ema=settings["ema"])


def model_config(name):
    """A member's settings: its model's, with the schema's defaults filled in and the member's seed."""
    if name in ABLATION:
        return ablation_variants()[name]
    member = MEMBERS[name]
    settings = {**MODEL_DEFAULTS, **config["models"][member.model], "seed": member.seed}
    settings.pop("seeds", None)
    settings.pop("refit", None)
    return settings


def refits(name):
    """Whether a member's model also trains a full-data refit."""
    return name in MEMBERS and config["models"][MEMBERS[name].model].get("refit", False)


REFITS = [m for m in MODELS if refits(m)]


def member_groups():
    """The model each member belongs to, in MODELS order (the blend reports the gain of seed averaging)."""
    return [MEMBERS[name].model for name in MODELS]


def check_models():
    """Fail at config check, before any job, on an unknown backbone or an empty schedule."""
    for name in MODELS:
        settings = model_config(name)
        try:
            get_backbone(settings["backbone"])  # the table of names, without importing torch or timm
        except ValueError as e:
            raise ValueError(f"models.{name}.backbone: {e}") from None
        if settings["layer_decay"] is not None and settings["lr_groups"] > 1:
            raise ValueError(f"models.{name}: layer_decay and lr_groups > 1 both set rates by depth; use one")
        if settings["head_epochs"] + settings["epochs"] < 1:
            raise ValueError(f"models.{name}: head_epochs + epochs must be at least 1")
        if refits(name) and (settings["keep"] == "best" or settings["patience"] > 0):
            raise ValueError(f"models.{name}: refit trains on every labelled image, with no validation set to "
                             "choose an epoch by; use keep: last and patience: 0, or refit: false")


def check_clip():
    """Fixed clip bounds that make no sense fail here, before any job, with the reason."""
    floor, ceiling = config["clip"]["floor"], config["clip"]["ceiling"]
    if floor >= ceiling:
        raise ValueError(f"clip.floor ({floor}) must be below clip.ceiling ({ceiling})")
    sample = f"{DATA}/sample_submission.csv"
    if os.path.exists(sample):
        with open(sample) as f:
            k = len(f.readline().strip().split(",")) - 1
        if k > 0 and ceiling < 1 / k:
            raise ValueError(f"clip.ceiling ({ceiling}) is below 1/K = 1/{k}: after renormalisation it is no "
                             "ceiling; use a value above 1/K, or 1.0 for none")
        if k > 0 and floor * k >= 1:
            raise ValueError(f"clip.floor ({floor}) is at least 1/K = 1/{k}: every row would be uniform")


check_models()
check_clip()


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
    return _flags(wildcards.model, None)


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


def lr_finder_result(wildcards):
    """Input function: the LR finder's suggestion for a model whose lr is `auto`, else nothing."""
    if model_config(wildcards.model)["lr"] != "auto":
        return []
    return expand(unflagged(rules.lr_find.output.suggestion), model=wildcards.model)


def lr_from_flag(wildcards, input):
    """`--lr-from FILE` when the rate comes from the LR finder."""
    return f"--lr-from {shlex.quote(input.lr[0])}" if input.lr else ""


def lr_find_outputs():
    """The LR finder's plots of the models with `lr: auto` (others: run its target by hand)."""
    auto = [m for m in MODELS if model_config(m)["lr"] == "auto"]
    return expand(unflagged(rules.lr_find.output.plot), model=auto)


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
    """Threads of one fold's job (train, predict and their refits). Run locally: the cores shared among the k
    folds, at least 1, so on a CPU the folds train side by side, one thread each on a small machine, which
    beats one fold at a time with every thread (2 folds on 2 cores: 20 s side by side vs 27 s in turn) and
    hides each job's torch import behind another's compute. On a cluster: 4, a job's own allocation."""
    if not (workflow.is_main_process and workflow.local_exec):
        return 4  # submitted by a cluster executor, or run on the node it was given (which re-evaluates this)
    return max(1, workflow.cores // len(FOLDS))


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
        return expand(unflagged(getattr(rules.predict.output, kind)), model=wildcards.model, fold=FOLDS)

    return tables


def refit_test(wildcards):
    """Input function: the test table of the model's full-data refit, when it has one."""
    if not refits(wildcards.model):
        return []
    return expand(unflagged(rules.predict_refit.output.test), model=wildcards.model)


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
        side, interpolation = cache_of(wildcards.model)
        return expand(unflagged(rules.cache.output.array), side=side, interpolation=interpolation, split=splits)

    return arrays


def cache_flag(wildcards, input):
    """`--cache DIR` when the job reads the decode-once cache."""
    return f"--cache {shlex.quote(os.path.dirname(input.cache[0]))}" if input.cache else ""


def feature_flags(wildcards):
    """The settings the cached features depend on, as flags: editing anything else leaves them valid."""
    return _flags(wildcards.model, FEATURE_KEYS)


def uses_features(name):
    """Whether a member's head phase trains on cached features."""
    settings = model_config(name)
    return (config["train"]["features"] and settings["head_epochs"] > 0 and not settings["mixup"]
            and not settings["cutmix"])


def features_input(wildcards):
    """Input function: the member's cached features, when its head phase uses them."""
    if not uses_features(wildcards.model):
        return []
    return expand(unflagged(rules.features.output.features), model=wildcards.model)


def feature_views(wildcards):
    """Augmented views to cache: `train.feature_views`, but no more than the head epochs that use them."""
    return min(config["train"]["feature_views"], model_config(wildcards.model)["head_epochs"])


def features_flag(wildcards, input):
    return f"--features {shlex.quote(input.features[0])}" if input.features else ""


def predict_tta(wildcards):
    """The TTA views a member predicts with: the config's; in the ablation, its tta step's views for the last
    trained row (whose plain view is scored too) and the original view alone before it."""
    if wildcards.model not in ABLATION:
        return config["predict"]["tta"]
    return config["ablation"]["tta"] if wildcards.model == ABLATION[-1] else ["original"]


def ablation_changes():
    """What each ablation step changes, in words, as JSON."""
    return json.dumps(ablation.describe(ablation_variants(), config["ablation"]["tta"]))


def answers_flag(wildcards, input):
    """`--answers FILE` when an answer key is configured."""
    return f"--answers {shlex.quote(str(input.answers))}" if input.answers else ""


def answer_scores():
    return [f"{RESULTS}/score/scores.json"] if ANSWERS else []


def provenance_outputs():
    return [f"{RESULTS}/provenance/config.yaml", f"{RESULTS}/provenance/versions.json"]


def config_json():
    return json.dumps(config, sort_keys=True)
