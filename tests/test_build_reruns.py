"""pipelines.build when things go wrong or run twice: interrupted builds (exceptions, a swap
that fails, a hard kill) never leave a broken or half-written set, and re-runs do nothing
unless inputs change or --force is given."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import REPO, corpus_args
from pipelines.records.build import BuildError, build, main
from pipelines.records.tfrecord import SchemaError, open_set
from test_build import FAST, RAVDESS_TWO, leftovers, set_copy, snapshot  # noqa: F401 - shared


# ---------------------------------------------------------------- interrupted builds


def test_failure_mid_write_leaves_no_set_in_a_fresh_output(small_corpus, tmp_path):
    out = tmp_path / "sets" / "fresh"
    with pytest.raises(RuntimeError, match="simulated failure"):
        build(corpus_args(small_corpus), out, shard_mb=0.5, _fail_after=10, **FAST)
    # the decoding pool is shut down at once, not left for the garbage collector
    assert multiprocessing.active_children() == []
    assert not out.exists()
    assert leftovers(out) == []
    with pytest.raises(SchemaError):
        open_set(out)


def test_failure_mid_write_keeps_the_previous_set_intact(set_copy, small_corpus):
    before = snapshot(set_copy)
    with pytest.raises(RuntimeError, match="simulated failure"):
        build(corpus_args(small_corpus), set_copy, shard_mb=0.5, force=True, _fail_after=10,
              **FAST)
    assert snapshot(set_copy) == before
    assert leftovers(set_copy) == []
    assert open_set(set_copy).schema["total_examples"] == 33


def test_failure_while_swapping_folders_keeps_the_previous_set(set_copy, small_corpus,
                                                               monkeypatch):
    """The new set is complete but cannot be moved into place: the old one must stay put."""
    before = snapshot(set_copy)
    real_rename = os.rename
    calls = []

    def rename(src, dst):
        calls.append((Path(src).name, Path(dst).name))
        if len(calls) == 2:  # out -> .out.old-PID went through; .out.tmp-PID -> out fails
            raise OSError("simulated failure while swapping folders")
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", rename)
    with pytest.raises(OSError, match="simulated failure"):
        build(corpus_args(small_corpus), set_copy, shard_mb=0.5, force=True, **FAST)
    monkeypatch.undo()
    assert calls[0][0] == set_copy.name and calls[1][1] == set_copy.name
    assert snapshot(set_copy) == before
    assert leftovers(set_copy) == []


KILL_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    import pipelines.records.build as B

    real = B.encode_example
    count = 0

    def encode_then_die(*args, **kwargs):
        global count
        count += 1
        if count == 12:
            os.kill(os.getpid(), signal.SIGKILL)  # no finally, no cleanup: a real kill
        return real(*args, **kwargs)

    if __name__ == "__main__":
        B.encode_example = encode_then_die
        B.build(sys.argv[2:], sys.argv[1], shard_mb=0.5, force=True, workers=2,
                progress=False)
""")


@pytest.mark.slow  # a subprocess that imports TensorFlow; the next test covers the clean-up
def test_hard_kill_mid_write_keeps_the_previous_set_and_is_cleaned_up(set_copy, small_corpus,
                                                                      tmp_path):
    before = snapshot(set_copy)
    script = tmp_path / "kill_build.py"
    script.write_text(KILL_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, str(script), str(set_copy),
                           *corpus_args(small_corpus)], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert snapshot(set_copy) == before
    stale = leftovers(set_copy)
    assert len(stale) == 1 and stale[0].startswith(f".{set_copy.name}.tmp-")
    assert not (set_copy.parent / stale[0] / "schema.json").exists()
    # the next build notices the dead builder's folder and removes it
    build(corpus_args(small_corpus), set_copy, shard_mb=0.5, **FAST)
    assert leftovers(set_copy) == []
    assert snapshot(set_copy) == before


DEAD_PID = 2 ** 22 + 12345  # above the largest possible pid_max: no such process


def test_a_killed_builds_folder_is_removed_even_by_an_up_to_date_run(set_copy, small_corpus):
    before = snapshot(set_copy)
    stale = set_copy.parent / f".{set_copy.name}.tmp-{DEAD_PID}"
    shutil.copytree(set_copy, stale)
    (stale / "schema.json").unlink()  # as a killed build leaves it: no schema yet
    live = set_copy.parent / f".{set_copy.name}.tmp-{os.getppid()}"  # a build still running
    live.mkdir()
    build(corpus_args(small_corpus), set_copy, shard_mb=0.5, **FAST)
    assert leftovers(set_copy) == [live.name]
    assert snapshot(set_copy) == before


def test_a_killed_swap_is_repaired_by_the_next_build(set_copy, small_corpus):
    """Killed between 'out -> .out.old-PID' and '.out.tmp-PID -> out': out is missing."""
    before = snapshot(set_copy)
    old = set_copy.parent / f".{set_copy.name}.old-{DEAD_PID}"
    os.rename(set_copy, old)
    schema = build(corpus_args(small_corpus), set_copy, shard_mb=0.5, **FAST)
    assert leftovers(set_copy) == []
    assert schema["total_examples"] == 33
    assert snapshot(set_copy) == before  # restored, then found up to date


# ---------------------------------------------------------------- idempotent re-runs


def test_second_run_does_nothing(built_set, small_corpus, capsys):
    before = snapshot(built_set)
    schema = build(corpus_args(small_corpus), built_set, shard_mb=0.5, **FAST)
    assert "up to date (33 clips); --force rebuilds it" in capsys.readouterr().out
    assert schema == json.loads((built_set / "schema.json").read_text())
    assert snapshot(built_set) == before
    assert leftovers(built_set) == []


def test_force_rebuilds(set_copy, small_corpus):
    before = snapshot(set_copy)
    old = json.loads((set_copy / "schema.json").read_text())
    schema = build(corpus_args(small_corpus), set_copy, shard_mb=0.5, force=True, **FAST)
    after = snapshot(set_copy)
    assert sorted(after) == sorted(before)
    assert all(after[name][0] != before[name][0] for name in after)  # every file is new
    assert schema["fingerprint"] == old["fingerprint"]
    # same inputs, same options: the same examples in the same shards
    for name in after:
        if name.endswith(".tfrecord") or name == "manifest.csv":
            assert after[name][2] == before[name][2], name


def test_changed_inputs_need_force(corpus_factory, tmp_path, capsys):
    folders = corpus_factory(actors=4, picks=RAVDESS_TWO, savee=False, bad=False)
    args, out = corpus_args(folders), tmp_path / "set"
    build(args, out, **FAST)
    before = snapshot(out)

    # 1. a file changed (new modification time)
    changed = Path(folders["ravdess"]) / "Actor_01" / "03-01-01-01-01-01-01.flac"
    os.utime(changed, ns=(changed.stat().st_atime_ns, changed.stat().st_mtime_ns + 10**9))
    with pytest.raises(BuildError, match="built from other inputs or options; pass --force"):
        build(args, out, **FAST)
    assert main([*sum([["--corpus", a] for a in args], []), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "--force" in err

    # 2. a new file
    shutil.copy(changed, changed.parent / "03-01-08-01-01-01-01.flac")
    with pytest.raises(BuildError, match="pass --force"):
        build(args, out, **FAST)
    # 3. other options
    with pytest.raises(BuildError, match="pass --force"):
        build(args, out, seed=1, **FAST)
    assert snapshot(out) == before

    schema = build(args, out, force=True, **FAST)
    assert schema["total_examples"] == 9
    build(args, out, **FAST)  # and now it is up to date
    assert "up to date (9 clips)" in capsys.readouterr().out


def test_output_folder_that_is_not_a_set_is_not_overwritten(small_corpus, tmp_path):
    out = tmp_path / "precious"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(BuildError, match="exists and is not a TFRecord set"):
        build(corpus_args(small_corpus), out, **FAST)
    assert (out / "notes.txt").read_text() == "keep me"
