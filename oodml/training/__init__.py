"""Training: one embedding model on one split with one objective, resumable, deterministic.

The public entry points are re-exported by :mod:`oodml.train` (``from oodml.train import train``);
this package holds them, one concern a module (no module imports torch before it needs to:
``config`` and ``classes`` are torch-free, so a study reads and hashes configs without it):

* :mod:`oodml.training.config` -- :class:`TrainConfig` (the schema is its type hints), its choices,
  ``ADDED_KEYS``, ``default_run_dir``.
* :mod:`oodml.training.classes` -- the dataset and fit / validation / test classes of a config.
* :mod:`oodml.training.runtime` -- loader processes, mixed precision, seeding and RNG state.
* :mod:`oodml.training.checkpoints` -- ``checkpoint.pt`` / ``best.pt`` I/O and the resume rule.
* :mod:`oodml.training.optim` -- the optimizer and the learning-rate scheduler.
* :mod:`oodml.training.embedding` -- ``embed`` and scoring a class set.
* :mod:`oodml.training.loop` -- ``train``: setup, resume, epoch, evaluation, checkpoint, final test.
* :mod:`oodml.training.runs` -- ``load_run`` / :class:`LoadedRun`.
* :mod:`oodml.training.cli` -- ``python -m oodml.train`` (``build_parser``, ``config_from_args``, ``main``).

Images and batches come from :mod:`oodml.data`, the model from :mod:`oodml.models`, objectives
from :mod:`oodml.losses`, metrics from :mod:`oodml.evaluate`.

What a run does
---------------
* **Classes.** ``split=None`` uses the dataset's standard split; otherwise series ``split`` of the
  split file ``splits`` (default ``splits/<dataset>.json``).  The model is fitted on the split's
  *fit* classes (train minus validation), whose labels are remapped to ``0..C-1``; proxy and
  classifier objectives get ``C`` classes.  Validation classes come from the split file; for the
  standard split (or a split without them) ``val_fraction`` of the train classes (at least 2,
  ``0`` = none) are drawn with the run's seed by :func:`oodml.splits.validation_classes`.
* **Model selection on validation classes only.** Every ``eval_every`` epochs (and after the
  last) the validation classes are embedded and scored; the epoch with the best validation
  Recall@1 (earliest on ties; the last epoch when there is no validation) is ``best.pt``.
  The test classes are used once, at the end, on that checkpoint — except with
  ``test_curve=True``, which also scores them after every epoch into ``test_curve.csv``
  (columns ``test_*``, never used for any choice).
* **Protocol and checkpoint rule** (``protocol``, ``selection``). ``protocol: default`` is the
  above. ``protocol: oodml`` reproduces the ooDML study: the model is fitted on *all* of the
  split's train classes (no validation classes are held out; ``val_fraction`` and a split's
  ``val`` list are ignored) and the checkpoint is chosen the way the study's code chose it,
  by the best test Recall@1 over the evaluated epochs. ``selection`` makes the rule explicit:
  ``val`` (best validation Recall@1; the default protocol's rule), ``last`` (the last epoch)
  or ``test`` (best *test* Recall@1 every ``eval_every`` epochs and after the last, earliest on
  ties: an **oracle** that looks at the test classes, the study's rule and the default under
  ``protocol: oodml``). ``metrics.json`` records ``protocol``, ``selection`` and ``oracle``;
  ``log.csv`` gets ``oracle_test_*`` columns under ``test`` selection. ``protocol: oodml`` with
  ``selection: val`` is refused (there are no validation classes).
* **Test metrics** of the chosen checkpoint: Recall@k, precision@1, R-precision, MAP@R, NMI and
  the study's mAP@1000, clustering F1, ρ-spectrum decay and intra/inter distance ratio
  (:data:`oodml.evaluate.STUDY_METRICS`).
* **Loop.** Class-balanced batches (:mod:`oodml.data`), Adam (default; ``adamw``/``sgd``) with
  the objective's own parameter groups, an optional per-epoch scheduler (``cosine``, ``step``,
  ``multistep``), AMP on CUDA only (``amp="auto"``: bf16 when supported, else fp16 with a
  GradScaler), a clear :class:`~oodml.errors.OodmlError` naming epoch and step when the loss
  becomes NaN/inf.
* **Determinism.** The seed fixes the model initialisation; at the start of epoch ``e`` the
  python, numpy and torch generators are re-seeded from ``(seed, e)`` and the sampler draws
  epoch ``e``'s batches and augmentations from ``(seed, e)`` only.  A resumed run therefore
  repeats an uninterrupted one; with ``deterministic=True`` (``torch.use_deterministic_algorithms``)
  bit for bit on CPU.
* **Files** in the run folder: ``config.yaml`` (every :class:`TrainConfig` key; reusable with
  ``--config``), ``run.json`` (provenance: oodml/torch/timm versions, dataset fingerprint,
  split file digest, resolved device/AMP/workers, class lists), ``log.csv`` (per epoch: epoch,
  loss, lr, seconds, ``val_*`` metrics), ``checkpoint.pt`` (last epoch, for resume),
  ``best.pt`` (chosen model: a ``torch.load(weights_only=True)`` dict of tensors and plain
  config), ``test_curve.csv`` (optional), ``tb/`` (TensorBoard, when installed) and, last,
  ``metrics.json``.  A run is *done* iff ``metrics.json`` exists.  All files are written
  atomically.
"""
