"""The README's tour runs as written: its Python snippets, in order, in one namespace."""

import re

from script_runner import ROOT


def test_the_tour_snippets_run_as_written(capsys):
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    tour = text[text.index("### A two-layer net, forward and backward"):text.index("## Learning backprop")]
    blocks = re.findall(r"```python\n(.*?)```", tour, re.S)
    assert len(blocks) >= 3
    namespace: dict = {}
    exec(compile("\n".join(blocks), "README.md", "exec"), namespace)
    out = capsys.readouterr().out
    assert "total                           39,760" in out and "OK: threshold 1e-06" in out
    assert namespace["result"] and namespace["loss"] > 0
