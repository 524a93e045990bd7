"""scripts/buy_apple.py prints the book's numbers for both shopping examples."""

from script_runner import run_script


def test_buy_apple_prints_the_seed_numbers():
    proc = run_script("scripts/buy_apple.py")
    assert proc.returncode == 0, proc.stderr
    values = {}
    section = None
    for line in proc.stdout.splitlines():
        if not line.startswith(" "):
            section = line.split(":")[0]
        else:
            name, value = line.split()
            values[(section, name)] = float(value)
    assert values == {
        ("buy_apple", "price"): 220, ("buy_apple", "dapple"): 2.2, ("buy_apple", "dapple_num"): 110,
        ("buy_apple", "dtax"): 200,
        ("buy_apple_orange", "price"): 715, ("buy_apple_orange", "dapple_num"): 110,
        ("buy_apple_orange", "dapple"): 2.2, ("buy_apple_orange", "dorange"): 3.3,
        ("buy_apple_orange", "dorange_num"): 165, ("buy_apple_orange", "dtax"): 650,
    }
