import fnet
from fnet import layers as L


def test_summary_table():
    net = fnet.sequential(L.flatten(), fnet.sequential(L.affine(50), L.relu()), L.affine(10))
    text = fnet.summary(net, (None, 28, 28))
    lines = text.splitlines()
    assert lines[0].split() == ["layer", "kind", "output", "shape", "params"]
    assert any(line.split() == ["sequential_0/affine_0", "affine", "(N,", "50)", "39,250"] for line in lines)
    assert any(line.split() == ["affine_0", "affine", "(N,", "10)", "510"] for line in lines)
    assert lines[-1].split() == ["total", "39,760"]
