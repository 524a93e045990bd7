"""fnet-train (scripts/train.py): train a network on MNIST or Fashion-MNIST.

The defaults are the book's chapter-5 run: two_layer_net(784, 50, 10), SGD
with learning rate 0.1, batch 100, 10000 iterations, evaluated on the
training and test sets after every epoch (600 iterations). --model resnet
and the recurrent models (rnn, lstm, gru) bring their own training recipe
for the options not given (see --model). The dataset defaults to
Fashion-MNIST, which ships as a Debian package and needs no download;
--dataset mnist gives the book's own data.
"""

from __future__ import annotations

import argparse
import difflib
import math
import re
from pathlib import Path

from fnet.cli.models import (
    IMAGE_MODELS,
    MODEL_DEFAULTS,
    MODELS,
    NET_INPUTS,
    SEQUENCE_MODELS,
    apply_model_defaults,
    recipe_text,
    resnet_defaults,
)

CLI_SPELLING = {"no_download": "--no-download", "download": "without --no-download",
                "data_dir": "--data-dir /path/to/dir", "data_dir_name": "--data-dir"}
"""How a data-not-found message names the options here (``fnet.data.locate.API_SPELLING``)."""
DEFAULT_COMPILE_CACHE = Path("~/.cache/fnet/xla").expanduser()
"""Where ``--compile-cache`` keeps the compiled programs unless told otherwise."""


def _argument(convert, ok, what: str):
    """An argparse ``type``: ``convert`` the text, then require ``ok(value)``; errors say ``what``."""

    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"expected {what}, got {value}")
        return value

    return parse


positive_int = _argument(int, lambda v: v >= 1, "a positive integer")
positive_float = _argument(float, lambda v: math.isfinite(v) and v > 0, "a positive number")
non_negative_float = _argument(float, lambda v: math.isfinite(v) and v >= 0, "a number >= 0")
_smoothing = _argument(float, lambda v: 0 <= v < 1, "a number in [0, 1)")
fraction = _argument(float, lambda v: 0 < v < 1, "a number in (0, 1)")
seed_number = _argument(int, lambda v: 0 <= v < 2 ** 63, "an integer in [0, 2**63)")
probability = _argument(float, lambda v: 0 <= v < 1, "a probability in [0, 1)")
"""The argparse types of fnet-train's options, shared by ``char_lm.py`` and ``seq2seq.py``."""


def _host_port(text: str) -> str:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT (the address of process 0, e.g. host0:1234), "
                                         f"got {text!r}")
    return text


def divergence_factor(text: str) -> float | None:
    """``--divergence``: a factor > 1, or ``off``."""
    if text.strip().lower() == "off":
        return None
    return _argument(float, lambda v: math.isfinite(v) and v > 1, "a factor > 1 or off")(text)


def xla_option(text: str) -> tuple[str, bool | int | float | str]:
    """``NAME=VALUE`` as ``(name, value)``; the value becomes a bool, int or float when it reads as one.

    ``NAME=`` gives the empty string (``xla_cpu_experimental_ynn_fusion_type=``
    turns YNNPACK off for matmuls).
    """
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    if value.lower() in ("true", "false"):
        return name.strip(), value.lower() == "true"
    for convert in (int, float):
        try:
            return name.strip(), convert(value)
        except ValueError:
            pass
    return name.strip(), value


class _Parser(argparse.ArgumentParser):
    """argparse, and for a misspelt option the closest real one (``--optimiser`` -> ``--optimizer``)."""

    def error(self, message: str):
        match = re.match(r"unrecognized arguments: (.*)", message)
        if match:
            known = [s for action in self._actions for s in action.option_strings if s.startswith("--")]
            hints = []
            for arg in match.group(1).split():
                name = arg.split("=")[0]
                close = difflib.get_close_matches(name, known, 1) if name.startswith("--") else []
                hints += [f"{name} -> {close[0]}"] if close else []
            if hints:
                message += f" (did you mean {', '.join(hints)}?)"
        # one line of usage, not the whole option list (fnet-train --help, docs/cli.md), then the error
        self.exit(2, f"usage: {self.prog} [options] (--help lists them)\n{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    from fnet import data, optim

    p = _Parser(
        prog="fnet-train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("data")
    g.add_argument("--dataset", choices=sorted(data.DATASETS), default="fashion-mnist")
    g.add_argument("--data-dir", type=Path, help="directory holding the four IDX files (else the "
                                                  "search path of fnet.data: $FNET_DATA, ~/.cache/fnet, ...)")
    g.add_argument("--no-download", action="store_true",
                   help="never download: fail with the list of places searched if the files are missing")
    g.add_argument("--no-data-cache", action="store_true",
                   help="decompress the IDX files on every run instead of keeping their decoded arrays as "
                        ".npy in ~/.cache/fnet/decoded (fnet.data.decoded)")
    g.add_argument("--train-size", type=positive_int,
                   help="use only the first N training examples (the book's overfitting experiments)")
    g = p.add_argument_group("model")
    g.add_argument("--model", choices=list(MODELS),
                   help="two_layer (the book's), mlp, convnet (the book's SimpleConvNet), resnet "
                        "(fnet.resnet), rnn, lstm, gru (fnet.sequence_classifier: each image as 28 rows "
                        "of 28 pixels). resnet and the recurrent models change the training defaults: "
                        + "; ".join(f"{m}: {recipe_text(MODEL_DEFAULTS[m])}" for m in ("resnet", "lstm"))
                        + " (default two_layer)")
    g.add_argument("--net", metavar="MODULE:FUNCTION",
                   help="your own network instead of --model: FUNCTION() of the importable MODULE (the "
                        "current directory is searched first) returns an fnet Layer giving one score per "
                        "class; the book's training defaults apply")
    g.add_argument("--net-input", choices=NET_INPUTS, default="image",
                   help="what --net reads: image (N, 28, 28, 1), the default; flat (N, 784); rows "
                        "(N, 28, 28)")
    g.add_argument("--hidden", type=positive_int, nargs="+", metavar="N",
                   help="hidden layer sizes (two_layer: one size, default 50; mlp: default 100 100; "
                        "rnn, lstm, gru: one size per stacked layer, default 128)")
    g.add_argument("--activation", choices=["relu", "sigmoid", "tanh"],
                   help="hidden activation of --model mlp (default relu)")
    g.add_argument("--weight-init", help="he, xavier or a standard deviation (two_layer default 0.01; "
                                         "convnet he; mlp: he for relu, xavier otherwise)")
    g.add_argument("--dropout", type=float, metavar="RATE",
                   help="mlp: dropout after each hidden layer, RATE = probability of dropping")
    g.add_argument("--batchnorm", action="store_true", help="mlp: batch norm before each activation")
    g.add_argument("--widths", type=positive_int, nargs="+", metavar="C",
                   help="resnet: channels of each stage (default 16 32 64)")
    g.add_argument("--blocks", type=positive_int, nargs="+", metavar="N",
                   help="resnet: residual blocks in each stage (default 2 2 2)")
    g = p.add_argument_group("training")
    g.add_argument("--optimizer", choices=sorted(optim.OPTIMIZERS),
                   help="default sgd (resnet: nesterov; rnn, lstm, gru: adam)")
    g.add_argument("--lr", type=positive_float, help="learning rate (default 0.1 for sgd as in the book, "
                                                      "else the optimizer's default)")
    g.add_argument("--weight-decay", type=non_negative_float, metavar="LAMBDA",
                   help="L2 weight decay on weights (not biases); default 0 (resnet: 5e-4)")
    g.add_argument("--schedule", choices=["constant", "step", "cosine"],
                   help="learning rate over the run: constant (default; resnet, rnn, lstm, gru: cosine); "
                        "step: x0.1 after each third of the steps; cosine: down to 0 at the last step")
    g.add_argument("--warmup", type=positive_int, metavar="STEPS",
                   help="raise the learning rate linearly over the first STEPS updates")
    g.add_argument("--clip-norm", type=positive_float, metavar="MAX",
                   help="rescale the gradients so that their global norm is at most MAX (the book's "
                        "clip_grads)")
    g.add_argument("--label-smoothing", type=_smoothing, metavar="EPS",
                   help="train against the target (1 - EPS) one-hot + EPS / classes instead of the one-hot "
                        "label (default 0); the losses reported are the smoothed loss")
    g.add_argument("--batch-size", type=positive_int, help="default 100 (resnet: 128)")
    g.add_argument("--augment", metavar="STEPS",
                   help="image models: augment each training batch on the device, e.g. crop,flip (crop:P "
                        "shifts by up to P pixels, default 2; flip mirrors left-right: right for "
                        "Fashion-MNIST, wrong for digits)")
    stop = g.add_mutually_exclusive_group()
    stop.add_argument("--epochs", type=positive_int, help="passes over the training set")
    stop.add_argument("--iters", type=positive_int, help="minibatch updates (default 10000, as the book)")
    g.add_argument("--sampling", choices=["shuffle", "replacement"], default="shuffle",
                   help="shuffle: each epoch visits every example once (default); replacement: the "
                        "book's random minibatches")
    g.add_argument("--seed", type=seed_number, default=0)
    g.add_argument("--divergence", type=divergence_factor, default=10.0, metavar="FACTOR",
                   help="stop (exit status 1) when an epoch's mean loss exceeds FACTOR times the starting "
                        "loss (default %(default)s; off: never)")
    g.add_argument("--val-fraction", type=fraction, metavar="F",
                   help="hold out this share of the training set (the same examples for the same seed) as a "
                        "validation set, evaluated after each epoch, on which --early-stop and --keep-best "
                        "choose")
    g.add_argument("--early-stop", type=positive_int, metavar="PATIENCE",
                   help="stop when the validation loss (without --val-fraction: the test loss, with a "
                        "warning) has not improved for PATIENCE epochs")
    g.add_argument("--no-eval-train", action="store_true", default=None,
                   help="skip evaluating the whole training set after each epoch (the default for resnet)")
    g.add_argument("--eval-train", action="store_false", dest="no_eval_train",
                   help="evaluate the whole training set after each epoch (the default but for resnet)")
    g = p.add_argument_group("devices (data parallel: the global --batch-size is split over devices)")
    g.add_argument("--devices", type=positive_int, metavar="N",
                   help="devices to train on (default: all GPUs or TPUs; on a CPU, one, with the evaluation "
                        "on a second CPU device; 1 for plain single-device training). On a CPU, N > 1 "
                        "makes N CPU devices that share the cores: --devices 2 trains the resnet faster on "
                        "two cores (batch norm then normalizes with each device's half of the batch; "
                        "docs/speed.md)")
    g.add_argument("--no-eval-overlap", action="store_true",
                   help="on a CPU, evaluate each epoch on the training device after it, instead of on a "
                        "second CPU device while the next epoch trains (the same results; a network "
                        "convolving several channels, the resnet, is evaluated after each epoch anyway: "
                        "docs/design.md)")
    g.add_argument("--coordinator", metavar="HOST:PORT", type=_host_port,
                   help="multi-host: address of process 0, the same on every host")
    g.add_argument("--num-processes", type=positive_int, metavar="N", help="multi-host: number of hosts")
    g.add_argument("--process-id", type=int, metavar="I", help="multi-host: this host's index, 0..N-1")
    g.add_argument("--xla-option", type=xla_option, action="append", metavar="NAME=VALUE",
                   help="an XLA compiler option for the training and evaluation programs (repeatable), "
                        "over fnet's CPU default (convolutions by Eigen, and matmuls too in a program "
                        "whose matmuls are all small); e.g. xla_cpu_experimental_ynn_fusion_type= "
                        "(empty: Eigen's matmuls in every program) makes larger networks slower on a "
                        "CPU (docs/speed.md)")
    g = p.add_argument_group("output")
    g.add_argument("--checkpoint", type=Path, metavar="PATH", help="save after every epoch (.npz)")
    g.add_argument("--resume", action="store_true", help="continue from --checkpoint")
    g.add_argument("--evaluate", action="store_true",
                   help="no training: the loss and accuracy of the --checkpoint's model on the test set")
    g.add_argument("--predict", type=Path, metavar="IMAGES",
                   help="no training: print the --checkpoint model's class for each image of IMAGES (an IDX "
                        "file such as t10k-images-idx3-ubyte.gz, or a .npy array of 28x28 images)")
    g.add_argument("--keep-best", action="store_true",
                   help="also save the epoch with the best validation accuracy so far (without "
                        "--val-fraction: the test accuracy, with a warning), as <checkpoint>.best.npz")
    g.add_argument("--overwrite", action="store_true",
                   help="replace an existing --checkpoint with a new run (without it, an existing "
                        "checkpoint is refused unless --resume)")
    g.add_argument("--plot", type=Path, metavar="PATH", help="PNG of loss and accuracy per epoch "
                                                             "(needs matplotlib: pip install fnet[plot])")
    g.add_argument("--json", type=Path, metavar="PATH", help="write metrics and timings as JSON")
    g.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    g.add_argument("--progress", action="store_true",
                   help="a progress line within each epoch (steps, samples/s, ETA) on stderr; the epoch runs "
                        "as 10 compiled pieces (one device)")
    add_compile_cache_options(g)
    return p


def add_compile_cache_options(group: argparse._ActionsContainer) -> None:
    """``--compile-cache DIR`` and ``--no-compile-cache``, as ``fnet-train``, ``seq2seq.py`` and
    ``char_lm.py`` take them (check them with ``check_compile_cache``, use them with
    ``use_compile_cache``)."""
    group.add_argument("--compile-cache", type=Path, metavar="DIR", default=DEFAULT_COMPILE_CACHE,
                       help="keep compiled XLA programs here, so that a rerun skips compilation "
                            "(JAX's persistent compilation cache; default %(default)s)")
    group.add_argument("--no-compile-cache", action="store_true", help="compile from scratch every time")


def check_compile_cache(a: argparse.Namespace) -> None:
    """``ValueError`` naming ``--compile-cache`` when a file cannot be written in its folder (checked
    before any work is done, as every output path)."""
    from fnet import _args

    if not a.no_compile_cache:
        _args.writable_path("", "--compile-cache", a.compile_cache / "probe")


def use_compile_cache(a: argparse.Namespace) -> None:
    """Turn on JAX's persistent compilation cache in ``a.compile_cache`` (unless
    ``--no-compile-cache``), every program kept however fast it compiled: before anything is
    compiled, so that a rerun finds all of its programs there."""
    import jax

    if not a.no_compile_cache:
        jax.config.update("jax_compilation_cache_dir", str(a.compile_cache))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


def check_args(p: argparse.ArgumentParser, a: argparse.Namespace) -> None:
    """Every option checked before anything is loaded or compiled; a bad one ends in ``p.error``.

    The model's training defaults are filled in first (``apply_model_defaults``)."""
    if a.net is not None:
        if a.model is not None:
            p.error(f"--net {a.net} and --model {a.model}: give one of them")
        a.model = "net"
    a.model = a.model or "two_layer"
    apply_model_defaults(a)
    check_model_options(p, a)
    check_training_options(p, a)
    check_hosts(p, a)
    check_checkpoint_options(p, a)
    if a.evaluate or a.predict:
        check_use(p, a)
    else:
        check_outputs(p, a)


def check_model_options(p: argparse.ArgumentParser, a: argparse.Namespace) -> None:
    """The model options that apply to ``--model`` (``--hidden`` to mlp, ``--widths`` to resnet, ...)."""
    if a.model == "net":
        for opt, value in (("--hidden", a.hidden), ("--activation", a.activation), ("--dropout", a.dropout),
                           ("--batchnorm", a.batchnorm or None), ("--weight-init", a.weight_init),
                           ("--widths", a.widths), ("--blocks", a.blocks)):
            if value is not None:
                p.error(f"{opt} describes a --model; --net {a.net} builds its own network")
        if a.evaluate or a.predict:
            p.error("--evaluate and --predict read the network from the --checkpoint's config: drop --net")
        module, _, function = a.net.partition(":")
        if not all(part.isidentifier() for part in module.split(".")) or not function.isidentifier():
            p.error(f"--net {a.net}: expected MODULE:FUNCTION, e.g. mynets:small_cnn (mynets.py in the "
                    "current directory, def small_cnn() returning an fnet Layer)")
        return
    if a.net_input != "image":
        p.error("--net-input applies to --net")
    if a.model == "two_layer":
        if a.hidden and len(a.hidden) != 1:
            p.error(f"--model two_layer has one hidden layer; got --hidden {' '.join(map(str, a.hidden))} "
                    "(use --model mlp for several)")
        for opt, value in (("--activation", a.activation), ("--dropout", a.dropout),
                           ("--batchnorm", a.batchnorm or None)):
            if value is not None:
                p.error(f"{opt} applies to --model mlp (two_layer is the book's Affine-ReLU-Affine)")
    if a.model in IMAGE_MODELS:
        for opt, value in (("--hidden", a.hidden), ("--activation", a.activation), ("--dropout", a.dropout),
                           ("--batchnorm", a.batchnorm or None)):
            if value is not None:
                p.error(f"{opt} applies to --model mlp")
    if a.model in SEQUENCE_MODELS:
        for opt, value in (("--activation", a.activation), ("--dropout", a.dropout),
                           ("--batchnorm", a.batchnorm or None), ("--weight-init", a.weight_init)):
            if value is not None:
                p.error(f"{opt} does not apply to --model {a.model} (tanh and sigmoid gates; Wx ~ N(0, 1/D), "
                        "Wh ~ N(0, 1/H) as the book's sequel)")
    if a.model != "resnet":
        for opt, value in (("--widths", a.widths), ("--blocks", a.blocks)):
            if value is not None:
                p.error(f"{opt} applies to --model resnet")
    elif a.weight_init is not None:
        p.error("--weight-init does not apply to --model resnet (He for every convolution, Xavier for "
                "the last affine)")
    else:
        widths, blocks = (given or default for given, default in zip((a.widths, a.blocks), resnet_defaults(),
                                                                      strict=True))
        if len(widths) != len(blocks):
            p.error(f"--widths and --blocks give one number per stage, so the same count; got "
                    f"{len(widths)} and {len(blocks)}")
    if a.weight_init is not None and a.weight_init not in ("he", "xavier"):
        try:
            if not 0 < float(a.weight_init) < math.inf:
                raise ValueError
        except ValueError:
            p.error("--weight-init must be he, xavier or a positive standard deviation; "
                    f"got {a.weight_init!r}")
    if a.dropout is not None and not 0 <= a.dropout < 1:
        p.error(f"--dropout is the probability of dropping a unit, in [0, 1); got {a.dropout}")


def check_training_options(p: argparse.ArgumentParser, a: argparse.Namespace) -> None:
    """``--augment`` (what it names, and that the model reads images)."""
    if a.augment is not None:
        from fnet.train import augment

        try:
            a.augment = str(augment.parse(a.augment, where="--augment"))
        except (TypeError, ValueError) as e:
            p.error(str(e))
        if a.model not in IMAGE_MODELS:
            reads = "rows as a sequence" if a.model in SEQUENCE_MODELS else "flattened vectors"
            p.error(f"--augment transforms images: use it with --model {' or '.join(IMAGE_MODELS)} "
                    f"(--model {a.model} reads {reads})")


def check_hosts(p: argparse.ArgumentParser, a: argparse.Namespace) -> None:
    """The multi-host options: all three or none, and a process id in range."""
    multi = (a.coordinator, a.num_processes, a.process_id)
    if any(v is not None for v in multi) and any(v is None for v in multi):
        p.error("multi-host training needs all of --coordinator HOST:PORT, --num-processes N and "
                "--process-id I")
    if a.process_id is not None and not 0 <= a.process_id < a.num_processes:
        p.error(f"--process-id must be in 0..{a.num_processes - 1}; got {a.process_id}")


def check_checkpoint_options(p: argparse.ArgumentParser, a: argparse.Namespace) -> None:
    """``--resume``, ``--keep-best`` and ``--overwrite`` with the ``--checkpoint`` they need."""
    if a.resume and a.checkpoint is None:
        p.error("--resume needs --checkpoint PATH")
    if a.resume and not a.checkpoint.exists():
        p.error(f"--resume: no checkpoint at {a.checkpoint}")
    if a.keep_best and a.checkpoint is None:
        p.error("--keep-best saves the best epoch beside the checkpoint: give --checkpoint PATH as well")
    if a.resume and a.overwrite:
        p.error("--resume continues a checkpoint and --overwrite replaces it: give one of them")


def check_use(p: argparse.ArgumentParser, a: argparse.Namespace) -> None:
    """``--evaluate`` or ``--predict``: an existing checkpoint, and nothing that trains."""
    use = "--evaluate" if a.evaluate else "--predict"
    if a.checkpoint is None or not a.checkpoint.is_file():
        p.error(f"{use} uses a trained model: give --checkpoint PATH of an existing checkpoint")
    if a.evaluate and a.predict:
        p.error("--evaluate and --predict: give one of them")
    if a.resume or a.overwrite or a.keep_best:
        p.error(f"{use} trains nothing: --resume, --overwrite and --keep-best do not apply")
    if a.predict and not a.predict.is_file():
        p.error(f"--predict: no file {a.predict}")


def check_outputs(p: argparse.ArgumentParser, a: argparse.Namespace) -> None:
    """A training run's checkpoint and output paths, checked now, so that a finished run never ends in a
    traceback about one."""
    from fnet import _args
    from fnet.train import checks

    try:
        checks.check_checkpoint_path(a.checkpoint, resume=a.resume, overwrite=a.overwrite, where="",
                                     spell=lambda k: f"--{k}", keep_best=a.keep_best)
        for option, path in (("--json", a.json), ("--plot", a.plot)):
            if path is not None:
                _args.writable_path("", option, path)
        check_compile_cache(a)
    except ValueError as e:
        p.error(str(e))
    if a.plot is not None:
        check_figure_path(p, "--plot", a.plot)


def check_figure_path(p: argparse.ArgumentParser, option: str, path: Path) -> None:
    """A figure's path (``--plot``, ``--attention-map``): matplotlib installed, and a file type it
    writes (the suffix; none: PNG), checked before training so that a finished run never ends in
    matplotlib's error about either."""
    try:
        from matplotlib.backend_bases import FigureCanvasBase
    except ImportError:
        p.error(f"{option} needs matplotlib: pip install 'fnet[plot]' (or pip install matplotlib)")
    kinds = FigureCanvasBase.get_supported_filetypes()
    suffix = path.suffix[1:].lower()
    if suffix and suffix not in kinds:
        p.error(f"{option} {path}: matplotlib cannot write .{suffix} files; name a .png, .pdf or .svg file "
                f"(it writes {', '.join(sorted(kinds))})")


def devices_mesh(p: argparse.ArgumentParser, devices: int, batch_size: int):
    """The mesh of ``--devices`` for a script that splits every minibatch of ``--batch-size`` over
    it (``seq2seq.py``, ``char_lm.py``): ``p.error`` naming the option when fewer devices are
    visible or the minibatch does not split evenly."""
    from fnet import distributed

    try:
        mesh = distributed.make_mesh(devices)
        distributed.check_batch(mesh, batch_size, what="--batch-size")
    except ValueError as e:
        p.error(f"--devices: {e}".replace("make_mesh: ", ""))
    return mesh


def default_lr(name: str) -> float:
    import inspect

    from fnet import optim

    return inspect.signature(optim.OPTIMIZERS[name]).parameters["lr"].default


def lr_schedule(parser, name: str, lr: float, warmup: int | None, total_steps: int):
    """``--schedule`` and ``--warmup`` as an ``lr=`` for the optimizer: a float or a schedule."""
    from fnet import schedules

    if warmup is not None and warmup >= total_steps:
        parser.error(f"--warmup {warmup} must be shorter than the run ({total_steps} steps)")
    if name == "cosine":
        return schedules.cosine(lr, total_steps, warmup_steps=warmup or 0)
    base = schedules.step_decay(lr, max(1, total_steps // 3)) if name == "step" else lr
    return base if warmup is None else schedules.warmup(base, warmup)

