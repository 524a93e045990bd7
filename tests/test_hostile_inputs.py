"""Hostile inputs, tried systematically: every public constructor of layers, models, optimizers,
schedules and combinators with each argument replaced by NaN, infinity, a string, an arbitrary
object and a negative number; every option of fnet-train and char_lm.py with values that
cannot work. Each is refused up front with a ``ValueError`` or ``TypeError`` that names the
function (or one line that names the option), or is a value the function documents as valid.
A new public function joins by itself (its valid arguments may need a line in ``VALID``)."""

import argparse
import importlib.util
import inspect
import re

import pytest
from script_runner import ROOT

import fnet
from fnet import combinators, losses, optim, schedules
from fnet import layers as L
from fnet import models as M

HOSTILE = (float("nan"), float("inf"), "x", object(), -3)

VALID = {
    "multi_layer_net": dict(input_size=4, hidden_sizes=[3], output_size=2),
    "two_layer_net": dict(input_size=4, hidden_size=3, output_size=2),
    "gpt": dict(vocab_size=5, context=4, dim=8, heads=2, layers=1),
    "transformer_block": dict(dim=8, heads=2),
    "rnnlm": dict(vocab_size=5, wordvec_size=4, hidden_size=4),
    "multi_head_attention": dict(heads=2),
    "by_name": dict(name="sgd"),
    "clip_by_global_norm": dict(optimizer=optim.sgd(0.1), max_norm=1.0),
    "step_decay": dict(lr=0.1, step_size=10),
    "cosine": dict(lr=0.1, total_steps=10),
    "warmup": dict(schedule=0.1, warmup_steps=5),
}
"""Valid arguments of the functions whose required arguments are not all the positive count 4."""

ACCEPTED = {("lstm", "forget_bias", -3), ("warmup", "schedule", -3)}
"""Hostile-looking values a function documents as valid: a negative forget-gate bias."""

NOT_CONSTRUCTORS = {"book_names", "weights_only", "matrices_only"}
"""Public functions that take a tree or a path, not settings (tested with their modules)."""


def _constructors():
    for module in (L, M, optim, schedules):
        names = getattr(module, "__all__", None) or [n for n in dir(module) if not n.startswith("_")]
        for name in names:
            fn = getattr(module, name)
            if inspect.isfunction(fn) and fn.__module__.startswith("fnet") and name not in NOT_CONSTRUCTORS:
                yield pytest.param(fn, id=f"{module.__name__.split('.')[-1]}.{name}")


def _base(fn) -> dict:
    sig = inspect.signature(fn)
    required = {k: 4 for k, p in sig.parameters.items()
                if p.default is inspect.Parameter.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    return {**required, **VALID.get(fn.__name__, {})}


@pytest.mark.parametrize("fn", list(_constructors()))
def test_every_argument_of_every_constructor_refuses_hostile_values_naming_the_function(fn):
    base = _base(fn)
    fn(**base)  # the valid arguments are valid (else VALID needs a line)
    named = re.compile(r"^[\w.]+( \(\w+\))?: ")
    for arg, p in inspect.signature(fn).parameters.items():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        for value in HOSTILE:
            try:
                fn(**{**base, arg: value})
            except (ValueError, TypeError) as e:
                assert named.match(str(e)), f"{fn.__name__}({arg}={value!r}): {type(e).__name__}: {e}"
            except Exception as e:  # any other class is the defect this test finds
                pytest.fail(f"{fn.__name__}({arg}={value!r}) raised {type(e).__name__}: {e}")
            else:
                assert (fn.__name__, arg, value) in ACCEPTED, f"{fn.__name__}({arg}={value!r}) was accepted"


@pytest.mark.parametrize("combinator", [combinators.sequential, combinators.residual, combinators.parallel,
                                        combinators.time_distributed])
def test_combinators_refuse_children_that_are_not_layers(combinator):
    for value in HOSTILE:
        with pytest.raises((TypeError, ValueError), match=rf"^{combinator.__name__}\b"):
            combinator(value)
    with pytest.raises((TypeError, ValueError), match=r"^tied_embedding"):
        combinators.tied_embedding(L.relu(), L.relu())


def test_loss_options_refuse_hostile_values():
    for value in HOSTILE:
        with pytest.raises((TypeError, ValueError), match="softmax_cross_entropy"):
            losses.softmax_cross_entropy.with_options(label_smoothing=value)
    with pytest.raises((TypeError, ValueError), match="softmax_cross_entropy"):
        losses.softmax_cross_entropy.with_options(bogus=1)


# ------------------------------------------------------------------------------------ the scripts' options


def _script(name: str):
    spec = importlib.util.spec_from_file_location(f"{name}_hostile", ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _options(parser: argparse.ArgumentParser):
    return [a for a in parser._actions if a.option_strings and a.nargs != 0 and a.dest != "help"]


@pytest.mark.parametrize("script", ["fnet-train", "char_lm.py", "seq2seq.py"])
def test_every_option_of_the_scripts_refuses_values_that_cannot_work_in_one_line(script, tmp_path,
                                                                               monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # output paths are probed by creating them: here, not in the checkout
    if script == "fnet-train":
        make, check, base = fnet.cli.build_parser, fnet.cli.check_args, []
    elif script == "char_lm.py":
        lm = _script("char_lm")
        (tmp_path / "t.txt").write_text("hello world " * 100)
        make, check, base = lm.parser, lm.check_args, ["--text", str(tmp_path / "t.txt")]
    else:
        s2s = _script("seq2seq")
        make, check, base = s2s.parser, s2s.check_args, ["--data", "addition"]
    refused = 0
    for action in _options(make()):
        option = action.option_strings[-1]
        for value in ("nan", "inf", "-1", "", "1e999", "x"):
            p = make()
            try:
                check(p, p.parse_args([*base, option, value]))
            except SystemExit as e:
                err = capsys.readouterr().err
                assert e.code == 2 and "Traceback" not in err, (option, value, err)
                assert re.search(r"error: .+\n$", err) and err.count("error:") == 1, (option, value, err)
                refused += 1
            except Exception as e:
                pytest.fail(f"{script} {option} {value!r}: {type(e).__name__}: {e}")
            else:
                assert option in FREE_TEXT, f"{script} {option} {value!r} was accepted"
    assert refused > 4 * len(_options(make()))  # most of these values are refused


FREE_TEXT = {"--data-dir", "--checkpoint", "--json", "--plot", "--compile-cache", "--text", "--prompt"}
"""Options whose value is a path or text: any of these strings may name a file (a missing one is
refused when it is read, in one line) or be the text to continue."""
