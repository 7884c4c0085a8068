"""Studies: a grid of training runs described by one YAML file, executed resumably.

A *study* crosses datasets × graded splits × objectives × seeds, trains every combination with
:func:`oodml.train.train`, optionally adapts each trained model (:func:`oodml.adapt.run_adaptation`)
and gathers everything into one long results table::

    python -m oodml.study plan    studies/embedded_quick.yaml     # the grid and each run's state
    python -m oodml.study run     studies/embedded_quick.yaml     # execute what is pending
    python -m oodml.study status  studies/embedded_quick.yaml     # counts and ETA
    python -m oodml.study collect studies/embedded_quick.yaml     # runs/<name>/results.csv

The same from Python: ``study = load_study(path)``, ``plan_table(study)``, ``run_study(study)``,
``status_summary(study)``, ``collect(study)``.

The package: :mod:`~oodml.study.load` (the study file, checked block by block),
:mod:`~oodml.study.plan` (the grid and a search's runs as :class:`~oodml.runs.RunSpec` cells, run
ids), :mod:`~oodml.study.execute` (select the runs, hand them to an executor of
:mod:`oodml.executors`), :mod:`~oodml.study.status` (plan table, counts, ETA),
:mod:`~oodml.study.collect` (the results table), :mod:`~oodml.study.cli` (the command). One run's
folder (spec, claims, state, execution) is :mod:`oodml.runs`.

Study file (YAML, loaded safely with :func:`oodml.io.load_yaml`)::

    name: embedded_quick                # folder name of the runs: runs/<name>/ (``runs_dir`` overrides)
    datasets:                           # list of names or {name, root, splits}
      - {name: glyphs, splits: splits/glyphs.json}   # no ``splits`` -> the standard split only
    splits: all                         # or a list of series ids of the split files
    controls: all                       # optional: also the class-count controls of those splits (or N draws)
    frozen: true                        # optional: frozen-extractor reference rows (oodml.frozen) at collect
    losses: [margin, {name: multisimilarity, params: {alpha: 2.0}}, {name: diva, train: {batch_size: 108}}]
    seeds: [0]
    train: {backbone: resnet10t, ...}  # shared TrainConfig keys
    adapt:                              # optional stages run after training, in order
      - {mode: fewshot, shots: [2, 5], episodes: 3}
      - {mode: probe, shots: [2, 5]}
    executor: {kind: local}             # local (jobs) | gpus (gpus, runs_per_gpu) | slurm (slurm: {...})
    protocol: oodml                     # optional: default | oodml (also accepted under train:)
    selection: test                     # optional: val | last | test (an ORACLE); default: the protocol's
    runs_dir: runs/embedded_quick       # default runs/<name>
    search: {sampler: random, trials: 4, scope: standard}   # optional: see oodml.search

Relative paths (split files, dataset roots, ``runs_dir``) are relative to the study's *base
folder*: the nearest folder above the study file holding ``pyproject.toml`` or ``.git`` (the
repository root), else the parent of a ``studies/`` folder, else the study file's folder.
Everything is checked before anything runs; a mistake gives one line naming the key (with the
closest valid spelling for a misspelt one).

**Runs as data.** Each grid cell becomes a resolved :class:`~oodml.train.TrainConfig` dict. Its run
id is ``oodml.io.stable_hash`` of ``{"config": <that dict without the keys in HASH_EXCLUDED>,
"split_digest": <hash of the split's entry in the split file, or null>}``. Keys added to the
config later (``protocol``, ``selection``) enter it only when they differ from the value older
files mean, so existing runs keep their ids. Excluded are the keys
that say *where* or *how fast* a run happens, not *what* it computes (``root``, ``splits`` path,
``device``, ``workers``, ``tensorboard``, ``eval_batch_size``): moving the data or the split
file, or running on another machine, keeps the ids, while changing a hyperparameter or
regenerating a split differently gives new ones. Adaptation stages
do **not** enter the id, so adding a stage later reuses the trained models: a run is *done* when
``metrics.json`` exists and every current stage is recorded in ``adapt_done.json``. Each run lives
in ``<runs_dir>/<run id>/``: ``study_run.json`` (study, dataset, split, fid, loss, seed, the
resolved config, stages; written before training), ``log.txt`` (its stdout/stderr), the trainer's
files (``run.json`` is the trainer's provenance, ``metrics.json``, checkpoints), ``adaptation.json``,
``study_timing.json`` (wall time of the last attempt, for the ETA), and on failure ``failed.json``
+ ``error.txt``.

**Crash safety.** A runner takes a run by creating ``claim.json`` with ``O_CREAT|O_EXCL`` (pid,
host, start time, a token) and keeps its mtime fresh (heartbeat). A claim is stale when its pid is
gone on the same host, or, from another host, when its heartbeat is older than ``stale_after``
seconds; a stale claim is removed (under a short reclaim lock) and the run taken again. Every file
is written atomically, the trainer resumes from its checkpoint, and a run counts as done only once
its ``metrics.json`` is complete, so killing a runner at any moment and starting it again finishes
the study with every result present exactly once. A failing run records ``failed.json`` (the
traceback's last line) and ``error.txt`` (the whole traceback) and does not stop the others;
``run --retry-failed`` runs it again.

**Results table.** :func:`collect` writes ``<runs_dir>/results.csv`` (and ``results.parquet``
when pyarrow is importable) with the columns :data:`RESULT_COLUMNS` (``selection`` is the run's checkpoint
rule: ``val``, ``last`` or ``test``, the oracle), one row per (run, stage,
metric), in grid order; identical inputs give a byte-identical CSV. Load it with
``pd.read_csv("runs/<name>/results.csv")``.
"""

# The names below are re-exported: earlier releases (tests, notebooks, benchmarks) import them
# from ``oodml.study``, where they lived before the package was split.
# ruff: noqa: F401
from oodml.executors import EXECUTOR_KEYS, EXECUTOR_KINDS
from oodml.runs import (
    _HOST,
    ADAPT_DONE,
    CLAIM,
    DEFAULT_HEARTBEAT,
    DEFAULT_STALE_AFTER,
    ERROR,
    FAILED,
    HASH_EXCLUDED,
    LOG,
    METRICS,
    QUEUED,
    RUN_JSON,
    RUN_SCHEMA,
    STATES,
    TIMING,
    AdaptFn,
    Claim,
    RunFn,
    RunSpec,
    _claim_status,
    _metrics_complete,
    _read_claim,
    _stages_done,
    adapt_run,
    claim_is_stale,
    close_bar,
    execute_run,
    is_done,
    load_run_fn,
    make_bar,
    pid_alive,
    run_state,
    stage_key,
    states,
    train_run,
    try_claim,
)
from oodml.study.cli import build_parser, main
from oodml.study.collect import EXTRA_RESULT_COLUMNS, RESULT_COLUMNS, collect, collect_rows, results_csv_text
from oodml.study.execute import run_study, select_runs
from oodml.study.load import (
    DATASET_KEYS,
    GRID_KEYS,
    LOSS_KEYS,
    PROTOCOL_KEYS,
    TOP_KEYS,
    Study,
    _check_keys,
    load_study,
    preflight,
)
from oodml.study.plan import selection_of
from oodml.study.status import format_status, plan_table, status_summary

__all__ = [
    "HASH_EXCLUDED",
    "RESULT_COLUMNS",
    "RunSpec",
    "Study",
    "collect",
    "collect_rows",
    "execute_run",
    "load_study",
    "plan_table",
    "run_state",
    "run_study",
    "status_summary",
]
