"""fnet.views.draw_network: a network's layers, fan-outs and merges as DOT text; the draw_net script."""

import shutil

import pytest
from script_runner import run_script

import fnet


def test_draw_network_shows_fan_out_and_merges():
    from fnet import layers as L

    net = fnet.sequential(L.affine(6), fnet.residual(fnet.sequential(L.affine(6), L.relu())),
                          fnet.parallel(L.affine(3), L.relu()))
    dot = fnet.views.draw_network(net, (None, 5))
    assert dot == fnet.draw_network(net, (None, 5))
    assert dot.count('label="repeat"') == 2
    assert dot.count('label="+"') == 1 and dot.count('label="concat"') == 1
    assert '"layer:affine_0" -> "repeat:1" [dir=back' in dot and 'label="Σ (N, 6)"' in dot  # gradients add up
    assert '"concat:2" -> "output" [label="(N, 9)"]' in dot
    assert 'subgraph "cluster_residual_0"' in dot and 'label="residual_0 (residual)"' in dot
    forward = [line for line in dot.splitlines() if "->" in line and "dir=back" not in line]
    backward = [line for line in dot.splitlines() if "dir=back" in line]
    assert len(forward) == len(backward) == 12  # every connection, once each way


def test_draw_network_of_a_chain_has_no_repeat():
    dot = fnet.views.draw_network(fnet.two_layer_net(784, 50, 10), (None, 784))
    assert "repeat" not in dot and 'label="Affine1\\naffine"' in dot
    assert '"layer:Relu1" -> "layer:Affine2" [label="(N, 50)"]' in dot
    with pytest.raises(ValueError, match="rankdir must be"):
        fnet.views.draw_network(fnet.two_layer_net(4, 3, 2), (None, 4), rankdir="RL")


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz dot is not installed")
def test_draw_net_script_draws_the_models(tmp_path):
    for model in ("two_layer", "convnet", "resnet"):
        out = tmp_path / f"{model}.svg"
        proc = run_script("scripts/draw_net.py", "--model", model, "--out", str(out))
        assert proc.returncode == 0, proc.stderr
        assert out.read_text().lstrip().startswith(("<?xml", "<svg"))
    proc = run_script("scripts/draw_net.py", "--model", "convnet", "--widths", "8", "--out",
                      str(tmp_path / "x.svg"))
    assert proc.returncode == 2 and "apply to --model resnet" in proc.stderr
