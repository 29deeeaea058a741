from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from remote_runner.batch import plan
from remote_runner.experiment.run_key import RunKey

names = st.lists(st.text("abcdefgh-", min_size=1, max_size=6), min_size=1, max_size=4, unique=True)


@given(apis=names, tools=names, runs=st.integers(1, 5))
def test_every_pair_gets_repetition_k_before_any_gets_k_plus_1(apis, tools, runs):
    keys = plan.expand(tuple(apis), tuple(tools), runs)
    assert len(keys) == len(set(keys)) == len(apis) * len(tools) * runs
    reps = [k.repetition for k in keys]
    assert reps == sorted(reps)
    per_rep = len(apis) * len(tools)
    for i, key in enumerate(keys):  # within a repetition: the given API order, then the tool order
        assert key == RunKey(i // per_rep + 1, apis[(i // len(tools)) % len(apis)], tools[i % len(tools)])


def test_run_folder_and_plan_json_round_trip(tmp_path: Path):
    keys = plan.expand(("blog", "scs"), ("llamaresttest",), 2)
    assert keys[0] == RunKey(1, "blog", "llamaresttest") and keys[1] == RunKey(1, "scs", "llamaresttest")
    assert keys[2].rel_dir == Path("blog/llamaresttest/run-2")
    plan.write(tmp_path, keys, {"runs": 2})
    assert plan.read(tmp_path) == (keys, {"runs": 2})
