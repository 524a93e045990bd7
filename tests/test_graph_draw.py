"""fnet.graph.draw: the DOT text puts the right values on the right arrows; SVG comes from Graphviz."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_graph_tape import buy

from fnet import graph
from fnet.graph import draw
from fnet.graph.tape import Tape

ROOT = Path(__file__).resolve().parents[1]
EDGE = re.compile(r'^\s*"([^"]+)" -> "([^"]+)"(?: \[(.*)\])?;$')
needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed")


def parse_edges(dot_text):
    """``{(tail, head): {"forward": [labels], "backward": [labels]}}`` from the DOT lines."""
    edges = {}
    for line in dot_text.splitlines():
        m = EDGE.match(line)
        if not m:
            continue
        tail, head, attrs = m.group(1), m.group(2), m.group(3) or ""
        label = re.search(r'label="([^"]*)"', attrs)
        kind = "backward" if "dir=back" in attrs else "forward"
        entry = edges.setdefault((tail, head), {"forward": [], "backward": []})
        entry[kind].append(label.group(1) if label else None)
    return edges


def node_labels(dot_text):
    return dict(re.findall(r'^\s*"([^"]+)" \[[^\]]*label="([^"]*)"', dot_text, re.M))


def drawn(example):
    g, price = example()
    g.backward(price)
    return g.to_dot()


def test_buy_apple_edges_carry_forward_values_and_gradients():
    text = drawn(buy.buy_apple_tape)
    assert parse_edges(text) == {
        ("input:apple", "op:0"): {"forward": ["100"], "backward": ["2.2"]},
        ("input:apple_num", "op:0"): {"forward": ["2"], "backward": ["110"]},
        ("op:0", "op:1"): {"forward": ["200"], "backward": ["1.1"]},
        ("input:tax", "op:1"): {"forward": ["1.1"], "backward": ["200"]},
        ("op:1", "output"): {"forward": ["220"], "backward": ["1"]},
    }
    labels = node_labels(text)
    assert labels["op:0"] == labels["op:1"] == "×"
    assert labels["input:apple"] == "apple" and labels["output"] == "price"
    assert re.search(r'"op:0" \[shape=circle', text)


def test_buy_apple_orange_edges_carry_forward_values_and_gradients():
    edges = parse_edges(drawn(buy.buy_apple_orange_tape))
    assert edges == {
        ("input:apple", "op:0"): {"forward": ["100"], "backward": ["2.2"]},
        ("input:apple_num", "op:0"): {"forward": ["2"], "backward": ["110"]},
        ("input:orange", "op:1"): {"forward": ["150"], "backward": ["3.3"]},
        ("input:orange_num", "op:1"): {"forward": ["3"], "backward": ["165"]},
        ("op:0", "op:2"): {"forward": ["200"], "backward": ["1.1"]},
        ("op:1", "op:2"): {"forward": ["450"], "backward": ["1.1"]},
        ("op:2", "op:3"): {"forward": ["650"], "backward": ["1.1"]},
        ("input:tax", "op:3"): {"forward": ["1.1"], "backward": ["650"]},
        ("op:3", "output"): {"forward": ["715"], "backward": ["1"]},
    }
    assert node_labels(drawn(buy.buy_apple_orange_tape))["op:2"] == "+"


def test_before_backward_only_forward_values_are_drawn():
    g, _ = buy.buy_apple_tape()
    edges = parse_edges(g.to_dot())
    assert all(e["backward"] == [] for e in edges.values())
    assert edges[("op:0", "op:1")]["forward"] == ["200"] and ("op:1", "output") not in edges


def test_fan_out_draws_one_gradient_per_use_and_their_sum():
    g = Tape()
    x = g.input("x", 3.0)
    z = g.apply(graph.add, g.apply(graph.mul, x, x), x, name="z")
    g.backward(z)
    text = g.to_dot()
    edges = parse_edges(text)
    assert edges[("input:x", "op:0")] == {"forward": ["3", "3"], "backward": ["3", "3"]}
    assert edges[("input:x", "op:1")] == {"forward": ["3"], "backward": ["1"]}
    total = r'label=<x<br/><font color="[^"]+">&#931; 7</font>>'  # x's label shows 3 + 3 + 1
    assert re.search(r'"input:x" \[shape=plaintext, ' + total + r'\]', text)


def test_constants_are_labelled_and_get_no_gradient():
    g = Tape()
    x = g.input("x", 0.5)
    y = g.apply(graph.exp, g.apply(graph.mul, x, -1.0))
    g.backward(y)
    text = g.to_dot()
    edges = parse_edges(text)
    assert edges[("const:0:1", "op:0")] == {"forward": [None], "backward": []}
    assert node_labels(text)["const:0:1"] == "-1"
    assert edges[("op:0", "op:1")] == {"forward": ["-0.5"], "backward": ["0.6065"]}  # exp(-0.5)
    assert edges[("input:x", "op:0")] == {"forward": ["0.5"], "backward": ["-0.6065"]}


def test_format_value():
    assert draw.format_value(220.00000000000003) == "220"
    assert draw.format_value(110.00000000000001) == "110"
    assert draw.format_value([1.0, 2.5]) == "[1 2.5]"
    assert draw.format_value([[1.0] * 3] * 2) == "float64[2,3]"
    assert draw.format_value(1 / 3, precision=2) == "0.33"


def test_names_are_quoted_safely():
    g = Tape()
    g.apply(graph.exp, g.input('say "hi"', 1.0))
    text = g.to_dot()
    assert '"input:say \\"hi\\"" [shape=plaintext, label="say \\"hi\\""];' in text


def test_dot_text_needs_no_graphviz(tmp_path, monkeypatch):
    monkeypatch.setattr(draw.shutil, "which", lambda name: None)
    g, price = buy.buy_apple_tape()
    g.backward(price)
    path = g.render(tmp_path / "apple.dot")
    assert path.read_text(encoding="utf-8") == g.to_dot()
    with pytest.raises(RuntimeError, match="Debian/Ubuntu package graphviz"):
        g.render(tmp_path / "apple.svg")
    with pytest.raises(ValueError, match="unknown format"):
        g.render(tmp_path / "apple.jpeg2000")


@needs_dot
def test_svg_and_png_are_rendered_by_dot(tmp_path):
    g, price = buy.buy_apple_tape()
    g.backward(price)
    svg = g.render(tmp_path / "apple.svg").read_text(encoding="utf-8")
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    for text in ("apple", "×", ">2.2<", ">110<", ">220<"):
        assert text in svg
    assert (g.render(tmp_path / "apple.png").read_bytes()[:8]) == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(RuntimeError, match="dot -Tsvg failed"):
        draw.render("digraph { this is not dot", tmp_path / "bad.svg")


def run_buy_apple(*args):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # this checkout's fnet, not an installed one
    return subprocess.run([sys.executable, "scripts/buy_apple.py", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


@needs_dot
def test_buy_apple_script_draws_both_examples(tmp_path):
    proc = run_buy_apple("--draw", str(tmp_path / "buy.svg"))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "buy_apple.svg").exists() and (tmp_path / "buy_apple_orange.svg").exists()
    assert proc.stdout.splitlines()[-2:] == [f"wrote {tmp_path / 'buy_apple.svg'}",
                                             f"wrote {tmp_path / 'buy_apple_orange.svg'}"]


def test_buy_apple_script_draws_one_example_as_dot_text(tmp_path):
    proc = run_buy_apple("--example", "apple", "--draw", str(tmp_path / "one.dot"))
    assert proc.returncode == 0, proc.stderr
    assert parse_edges((tmp_path / "one.dot").read_text())[("input:tax", "op:1")]["backward"] == ["200"]
    proc = run_buy_apple("--example", "apple", "--draw", str(tmp_path / "one.bmp"))
    assert proc.returncode == 1 and "unknown format" in proc.stderr
